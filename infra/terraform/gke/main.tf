# A GKE cluster for asdflow: one autoscaled CPU pool for MLflow, the detector, Kubeflow
# Pipelines and the CPU steps, and one NVIDIA GPU pool that scales from zero for the GPU
# steps (separation training, Tango fine-tuning and generation).
#
# The GPU pool's taint and label are the other half of the pipeline's kfp-kubernetes
# settings (asdflow.config.GpuConfig): toleration nvidia.com/gpu=present:NoSchedule and
# node selector cloud.google.com/gke-nodepool=<pool name>. Only pods that tolerate the
# taint land there, so detectors and CPU steps never hold a GPU node up.

resource "google_container_cluster" "asdflow" {
  name     = var.cluster_name
  location = var.region

  node_locations           = var.zones
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true

  release_channel {
    channel = "REGULAR"
  }

  # Workload Identity: Kubernetes ServiceAccounts act as Google service accounts (storage.tf).
  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  # Dataplane V2 enforces the NetworkPolicies in infra/k8s/base/network-policies.yaml.
  datapath_provider = "ADVANCED_DATAPATH"

  ip_allocation_policy {}
}

resource "google_container_node_pool" "cpu" {
  name     = "asdflow-cpu"
  cluster  = google_container_cluster.asdflow.id
  location = var.region

  autoscaling {
    min_node_count = var.cpu_min_nodes
    max_node_count = var.cpu_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type = var.cpu_machine_type
    disk_size_gb = 100
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

resource "google_container_node_pool" "gpu" {
  name     = var.gpu_pool_name
  cluster  = google_container_cluster.asdflow.id
  location = var.region

  initial_node_count = 0

  # From zero: the cluster autoscaler adds a GPU node when a pending pod tolerates the
  # taint and selects this pool, and removes it when the step is done.
  autoscaling {
    total_min_node_count = 0
    total_max_node_count = var.gpu_max_nodes
    location_policy      = "ANY"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type = var.gpu_machine_type
    spot         = var.gpu_spot
    disk_size_gb = 200 # the CUDA image and model weights
    disk_type    = "pd-balanced"
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]

    guest_accelerator {
      type  = var.gpu_type
      count = var.gpus_per_node

      # GKE installs the NVIDIA driver and the device plugin (resource nvidia.com/gpu).
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }

    # GKE labels every node of this pool cloud.google.com/gke-nodepool = var.gpu_pool_name
    # (the pipeline's node selector); this label is for people and dashboards.
    labels = {
      "asdflow.io/pool" = "gpu"
    }

    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}
