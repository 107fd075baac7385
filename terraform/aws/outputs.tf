output "api_url" {
  description = "The base URL relays call."
  value       = aws_apigatewayv2_api.main.api_endpoint
}

output "relay_token" {
  description = "The relay token: relays send `Authorization: Bearer <relay_token>`. Read it with `terraform output -raw relay_token`."
  value       = random_password.relay_token.result
  sensitive   = true
}

output "google_credentials_secret" {
  description = "The secret to put the Google service-account key into (aws secretsmanager put-secret-value --secret-binary)."
  value       = aws_secretsmanager_secret.google_credentials.arn
}

output "function_names" {
  description = "The Lambda functions."
  value       = { for name, function in aws_lambda_function.function : name => function.function_name }
}
