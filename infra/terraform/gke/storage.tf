# prod's object stores (infra/k8s/overlays/prod): MLflow's artifacts and the DVC remote on
# GCS, reached through Workload Identity, so no keys exist in the cluster.

resource "google_storage_bucket" "mlflow_artifacts" {
  name                        = "${var.project_id}-asdflow-mlflow-artifacts"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

resource "google_storage_bucket" "dvc" {
  name                        = "${var.project_id}-asdflow-dvc"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }
}

resource "google_service_account" "mlflow" {
  account_id   = "asdflow-mlflow"
  display_name = "asdflow MLflow tracking server"
}

resource "google_service_account" "pipeline" {
  account_id   = "asdflow-pipeline"
  display_name = "asdflow pipeline runner (KFP)"
}

resource "google_storage_bucket_iam_member" "mlflow_artifacts" {
  bucket = google_storage_bucket.mlflow_artifacts.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.mlflow.email}"
}

# Pipelines only read the data (`dvc pull` at a revision); people `dvc push` with their own accounts.
resource "google_storage_bucket_iam_member" "pipeline_dvc" {
  bucket = google_storage_bucket.dvc.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# Kubernetes ServiceAccount -> Google service account (namespace/name as in infra/k8s).
resource "google_service_account_iam_member" "mlflow_workload_identity" {
  service_account_id = google_service_account.mlflow.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[asdflow/mlflow]"
}

resource "google_service_account_iam_member" "pipeline_workload_identity" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[kubeflow/asdflow-pipeline-runner]"
}
