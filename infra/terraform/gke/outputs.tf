output "cluster_name" {
  value = google_container_cluster.asdflow.name
}

output "get_credentials" {
  description = "Point kubectl at the new cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.asdflow.name} --region ${var.region} --project ${var.project_id}"
}

output "gpu_node_selector" {
  description = "The node selector of the pipeline's GPU steps (GpuConfig.node_selector_key/value)."
  value       = "cloud.google.com/gke-nodepool=${google_container_node_pool.gpu.name}"
}

output "mlflow_artifacts_bucket" {
  value = "gs://${google_storage_bucket.mlflow_artifacts.name}"
}

output "dvc_remote_url" {
  value = "gs://${google_storage_bucket.dvc.name}"
}

output "mlflow_gsa_email" {
  value = google_service_account.mlflow.email
}

output "pipeline_gsa_email" {
  value = google_service_account.pipeline.email
}
