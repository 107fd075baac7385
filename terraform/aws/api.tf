# The HTTP API: the routes of ../gcp/openapi.yaml, each to its function. The
# Authorization header reaches the functions unchanged, and they check the
# relay token, as on Google Cloud.

resource "aws_apigatewayv2_api" "main" {
  name          = "${var.name}-keypackages"
  description   = "KeyPackage service, HTTP API v1"
  protocol_type = "HTTP"
}

resource "aws_cloudwatch_log_group" "api" {
  name              = "/${var.name}/http-api"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.main.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.throttle_rate
    throttling_burst_limit   = var.throttle_burst
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      sourceIp           = "$context.identity.sourceIp"
      requestTime        = "$context.requestTime"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationLatency = "$context.integrationLatency"
      integrationError   = "$context.integrationErrorMessage"
    })
  }
}

resource "aws_apigatewayv2_integration" "function" {
  for_each = local.functions

  api_id                 = aws_apigatewayv2_api.main.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.function[each.key].invoke_arn
  payload_format_version = "2.0"
  # An HTTP API waits at most 30 s for an integration.
  timeout_milliseconds = min(each.value.timeout, 30) * 1000
}

resource "aws_apigatewayv2_route" "route" {
  for_each = local.routes

  #checkov:skip=CKV_AWS_309:The functions authenticate every /v1/ request by its relay bearer token (KP_RELAY_TOKEN); an API Gateway authorizer would add a Lambda invocation per request to check the same token.
  api_id             = aws_apigatewayv2_api.main.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.function[each.value].id}"
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "api" {
  for_each = toset(values(local.routes))

  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.main.execution_arn}/*"
}
