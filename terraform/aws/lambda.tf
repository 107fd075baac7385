# One role, log group and function per function binary.

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# Least privilege: write its own logs, read the two secrets, decrypt with the
# service's key (secrets and environment). Firestore access is granted on the
# Google side, to the service account whose key is in the secret.
data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid     = "ReadSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_secretsmanager_secret.relay_tokens.arn,
      aws_secretsmanager_secret.google_credentials.arn,
    ]
  }

  statement {
    sid       = "DecryptWithServiceKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "${var.name}-${each.key}"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

resource "aws_cloudwatch_log_group" "function" {
  for_each = local.functions

  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_lambda_function" "function" {
  for_each = local.functions

  #checkov:skip=CKV_AWS_50:X-Ray tracing would only time the invocation: the binaries emit no X-Ray segments (they log JSON lines with a request id).
  #checkov:skip=CKV_AWS_116:The HTTP API invokes synchronously (no dead-letter queue applies); cleanup, invoked by the scheduler, is idempotent and runs again on the next schedule.
  #checkov:skip=CKV_AWS_117:The functions reach only Firestore, over the internet with TLS; in a VPC they would need a NAT gateway and would reach no private AWS resource.
  #checkov:skip=CKV_AWS_272:The zips are built by the operator from the repository (Dockerfile); add an aws_signer signing profile where an organisation requires signed code.
  function_name = "${var.name}-${each.key}"
  description   = "KeyPackage service: ${each.key} function"
  role          = aws_iam_role.function[each.key].arn

  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  filename         = "${var.lambda_zip_dir}/${each.key}.zip"
  source_code_hash = filebase64sha256("${var.lambda_zip_dir}/${each.key}.zip")
  memory_size      = var.memory_mb
  timeout          = each.value.timeout
  layers           = [var.secrets_extension_layer_arn]
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = merge(
      { RUST_LOG = "info" },
      var.settings,
      {
        KP_STORE              = "firestore"
        FIRESTORE_PROJECT_ID  = var.firestore_project_id
        FIRESTORE_DATABASE_ID = var.firestore_database_id
        KP_COLLECTION_PREFIX  = var.collection_prefix
        # The URL owners sign in their NIP-98 `u` tag.
        KP_PUBLIC_URL = aws_apigatewayv2_api.main.api_endpoint
        # Read by the bootstrap script (terraform/aws/bootstrap) before the
        # binary starts: KP_RELAY_TOKEN and GOOGLE_APPLICATION_CREDENTIALS.
        KP_RELAY_TOKEN_SECRET_ID        = aws_secretsmanager_secret.relay_tokens.arn
        KP_GOOGLE_CREDENTIALS_SECRET_ID = aws_secretsmanager_secret.google_credentials.arn
      },
      # Cleanup runs on the scheduler, not inside the gateway function.
      each.key == "gateway" ? { KP_CLEANUP_INTERVAL_SECS = "0" } : {},
    )
  }

  depends_on = [
    aws_iam_role_policy.function,
    aws_cloudwatch_log_group.function,
    aws_secretsmanager_secret_version.relay_tokens,
  ]
}
