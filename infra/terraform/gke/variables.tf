variable "project_id" {
  description = "GCP project that holds the cluster and the buckets."
  type        = string
}

variable "region" {
  description = "Region of the cluster and buckets."
  type        = string
  default     = "europe-west4"
}

variable "zones" {
  description = "Zones the node pools use; pick zones that offer var.gpu_type."
  type        = list(string)
  default     = ["europe-west4-a", "europe-west4-b"]
}

variable "cluster_name" {
  type    = string
  default = "asdflow"
}

variable "cpu_machine_type" {
  description = "MLflow, the detector, KFP itself and the CPU pipeline steps."
  type        = string
  default     = "e2-standard-8"
}

variable "cpu_min_nodes" {
  type    = number
  default = 1
}

variable "cpu_max_nodes" {
  type    = number
  default = 6
}

# The GPU pool's name is also its node label cloud.google.com/gke-nodepool, which the
# pipeline's node selector uses: keep it equal to GpuConfig.node_selector_value
# (src/asdflow/config.py; tests/infra/test_terraform_matches_pipeline.py checks it).
variable "gpu_pool_name" {
  type    = string
  default = "asdflow-gpu"
}

variable "gpu_machine_type" {
  description = "Must be a machine type that takes var.gpu_type (g2-* for L4, n1-* for T4/V100, a2-* for A100)."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_type" {
  type    = string
  default = "nvidia-l4"
}

variable "gpus_per_node" {
  description = "At least GpuConfig.accelerator_limit, so one GPU step fits on one node."
  type        = number
  default     = 1
}

variable "gpu_max_nodes" {
  description = "Upper bound of the GPU pool per zone; it scales from 0 when no GPU step runs."
  type        = number
  default     = 2
}

variable "gpu_spot" {
  description = "Spot GPU nodes: cheaper; a preempted step is retried by KFP."
  type        = bool
  default     = false
}
