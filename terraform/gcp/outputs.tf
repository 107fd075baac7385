output "gateway_url" {
  description = "The base URL relays call (every route of API.md that the code serves)."
  value       = "https://${google_api_gateway_gateway.main.default_hostname}"
}

output "relay_token" {
  description = "The relay token: relays send `Authorization: Bearer <relay_token>`. Read it with `terraform output -raw relay_token`."
  value       = random_password.relay_token.result
  sensitive   = true
}

output "function_urls" {
  description = "Each function's own Cloud Run URL (it also serves /healthz, /readyz and /metrics, to callers with roles/run.invoker)."
  value       = { for name, service in google_cloud_run_v2_service.function : name => service.uri }
}

output "firestore_database" {
  description = "The Firestore database the functions use."
  value       = google_firestore_database.main.name
}

output "dashboard" {
  description = "The Cloud Monitoring dashboard."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.main.id), length(split("/", google_monitoring_dashboard.main.id)) - 1)}?project=${var.project_id}"
}
