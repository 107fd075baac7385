# API Gateway: one public HTTPS host that routes each path of API.md to the
# Cloud Run service of its function, by the OpenAPI spec in openapi.yaml,
# authenticating to each (IAM-only) service as its own service account.

resource "google_api_gateway_api" "main" {
  provider = google-beta

  api_id = var.name

  depends_on = [google_project_service.api]
}

resource "google_api_gateway_api_config" "main" {
  provider = google-beta

  api                  = google_api_gateway_api.main.api_id
  api_config_id_prefix = "${var.name}-"

  openapi_documents {
    document {
      path = "openapi.yaml"
      contents = base64encode(templatefile("${path.module}/openapi.yaml", {
        for name, _ in local.functions : "${name}_url" => google_cloud_run_v2_service.function[name].uri
      }))
    }
  }

  # The gateway calls each function with an ID token of this account
  # (`jwt_audience` in openapi.yaml), which may invoke the functions.
  gateway_config {
    backend_config {
      google_service_account = google_service_account.api_gateway.email
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.api_gateway]

  # A new configuration (new Cloud Run URLs, a changed spec) is created before
  # the gateway switches to it and the old one is deleted.
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "main" {
  provider = google-beta

  region     = var.region
  gateway_id = var.name
  api_config = google_api_gateway_api_config.main.id
}

# An API Gateway API is a managed service of its own, which must be enabled in
# the project before the gateway serves it.
resource "google_project_service" "gateway_managed_service" {
  service            = google_api_gateway_api.main.managed_service
  disable_on_destroy = false
}
