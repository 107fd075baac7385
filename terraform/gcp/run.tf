# One service account and one Cloud Run service per function, all from the
# same image: the function is the binary the container runs.

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "${var.name}-${each.key}"
  display_name = "KeyPackage service: ${each.key} function"
}

# Firestore access, limited to the service's database by an IAM condition.
resource "google_project_iam_member" "firestore" {
  for_each = local.functions

  project = var.project_id
  role    = each.value.firestore_role
  member  = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title      = "${var.name}-${each.key}-database"
    expression = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database_id}\""
  }
}

# Each function reads the relay token list, and no other secret.
resource "google_secret_manager_secret_iam_member" "token" {
  for_each = local.functions

  secret_id = google_secret_manager_secret.relay_tokens.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_cloud_run_v2_service" "function" {
  for_each = local.functions

  name                = "${var.name}-${each.key}"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.function[each.key].email
    timeout                          = "${each.value.timeout_seconds}s"
    max_instance_request_concurrency = var.concurrency

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image   = var.image
      command = ["/usr/local/bin/${each.key}"]

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(
          { RUST_LOG = "info" },
          var.settings,
          {
            KP_STORE              = "firestore"
            FIRESTORE_PROJECT_ID  = var.project_id
            FIRESTORE_DATABASE_ID = google_firestore_database.main.name
            KP_COLLECTION_PREFIX  = var.collection_prefix
          },
          # Cloud Run lets in only the invokers below, each with a Google
          # ID token it verified: the relay's token arrives from API Gateway
          # as X-Forwarded-Authorization.
          { KP_PLATFORM_AUTHENTICATED = "true" },
          # The scheduler's account runs cleanup without a relay token.
          each.key == "cleanup" ? { KP_PLATFORM_INVOKERS = google_service_account.scheduler.email } : {},
          # Cleanup runs on the scheduler, not in the gateway process.
          each.key == "gateway" ? { KP_CLEANUP_INTERVAL_SECS = "0" } : {},
          # Not derived from the gateway: the gateway's configuration needs
          # the services' URLs first.
          var.public_url == "" ? {} : { KP_PUBLIC_URL = trimsuffix(var.public_url, "/") },
        )
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "KP_RELAY_TOKEN"
        value_source {
          secret_key_ref {
            secret = google_secret_manager_secret.relay_tokens.secret_id
            # The version number, not "latest": a new token list rolls out
            # a new revision.
            version = google_secret_manager_secret_version.relay_tokens.version
          }
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 15
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds = 30
      }
    }
  }

  depends_on = [
    google_project_service.api,
    google_project_iam_member.firestore,
    google_secret_manager_secret_iam_member.token,
  ]
}

# The services are IAM-only (no allUsers invoker): Cloud Run lets in only
# API Gateway's service account, on every function, and the scheduler's, on
# cleanup (scheduler.tf), each with a Google ID token it verifies. The
# functions still check the relay token that API Gateway forwards in
# X-Forwarded-Authorization, and refuse a request through the gateway that
# has none.
resource "google_service_account" "api_gateway" {
  account_id   = "${var.name}-api-gateway"
  display_name = "KeyPackage service: API Gateway calling the functions"
}

resource "google_cloud_run_v2_service_iam_member" "api_gateway" {
  for_each = local.functions

  name     = google_cloud_run_v2_service.function[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.api_gateway.email}"
}
