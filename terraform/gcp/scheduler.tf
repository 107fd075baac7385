# Cloud Scheduler runs cleanup: expired KeyPackages, tombstones past their
# purge time and audit records past KP_AUDIT_RETENTION_SECS.
#
# The job authenticates with the cleanup token, not with an OIDC token: an
# OIDC token travels in the Authorization header, which Cloud Scheduler fills
# with it, while the cleanup function (like every function) requires
# `Authorization: Bearer <token>` with one of its KP_RELAY_TOKEN tokens. The
# cleanup token is stored in the job, readable by whoever can read the job,
# and it opens nothing but cleanup (which only deletes what has expired).

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
      "Content-Type"  = "application/json"
      "Authorization" = "Bearer ${random_password.cleanup_token.result}"
    }
  }

  depends_on = [google_project_service.api]
}
