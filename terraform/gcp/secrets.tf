# The relay token: relays send it as `Authorization: Bearer <token>` on every
# /v1/ route (API Gateway hands it to the functions as
# X-Forwarded-Authorization), and every function checks it (KP_RELAY_TOKEN, a
# comma-separated list). The scheduler needs none: it calls cleanup with an
# OIDC token (scheduler.tf).

resource "random_password" "relay_token" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "relay_tokens" {
  secret_id = "${var.name}-relay-tokens"

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_version" "relay_tokens" {
  secret      = google_secret_manager_secret.relay_tokens.id
  secret_data = join(",", concat([random_password.relay_token.result], var.additional_relay_tokens))
}
