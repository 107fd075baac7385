# The relay token: relays send it as `Authorization: Bearer <token>` on every
# /v1/ route, and every function checks it (KP_RELAY_TOKEN, a comma-separated
# list). Cleanup has a token of its own, which the scheduler job sends: it is
# stored in the job's configuration, so it only ever opens POST /v1/cleanup.

resource "random_password" "relay_token" {
  length  = 48
  special = false
}

resource "random_password" "cleanup_token" {
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

# The cleanup function accepts its own token and the relay tokens, so that an
# operator or a relay may also run cleanup through the gateway.
resource "google_secret_manager_secret" "cleanup_tokens" {
  secret_id = "${var.name}-cleanup-tokens"

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_version" "cleanup_tokens" {
  secret = google_secret_manager_secret.cleanup_tokens.id
  secret_data = join(",", concat(
    [random_password.cleanup_token.result, random_password.relay_token.result],
    var.additional_relay_tokens,
  ))
}

locals {
  # Which secret each function reads its KP_RELAY_TOKEN from.
  token_secret = {
    for name, _ in local.functions : name => (
      name == "cleanup"
      ? { secret = google_secret_manager_secret.cleanup_tokens, version = google_secret_manager_secret_version.cleanup_tokens }
      : { secret = google_secret_manager_secret.relay_tokens, version = google_secret_manager_secret_version.relay_tokens }
    )
  }
}
