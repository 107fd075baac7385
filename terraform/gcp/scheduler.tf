# Cloud Scheduler runs cleanup: expired KeyPackages, tombstones past their
# purge time and audit records past KP_AUDIT_RETENTION_SECS (which the
# Firestore TTL policy on keypackage_audit.expire_at also deletes, up to a day
# late).
#
# The job authenticates with an OIDC token of its own service account, which
# may invoke the cleanup service and nothing else. Cloud Run verifies the
# token (the service is IAM-only), and the cleanup function, told by
# KP_PLATFORM_INVOKERS that this account needs no relay token, runs cleanup.
# No secret is stored in the job.

resource "google_service_account" "scheduler" {
  account_id   = "${var.name}-scheduler"
  display_name = "KeyPackage service: Cloud Scheduler calling cleanup"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_cleanup" {
  name     = google_cloud_run_v2_service.function["cleanup"].name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_scheduler_job" "cleanup" {
  name             = "${var.name}-cleanup"
  region           = var.region
  description      = "Runs the KeyPackage service's cleanup (POST /v1/cleanup)"
  schedule         = var.cleanup_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "120s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "10s"
    max_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.function["cleanup"].uri}/v1/cleanup"
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloud_run_v2_service.function["cleanup"].uri
    }
  }

  depends_on = [
    google_project_service.api,
    google_cloud_run_v2_service_iam_member.scheduler_invokes_cleanup,
  ]
}
