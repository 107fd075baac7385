# One customer-managed key encrypts the secrets, the functions' environment,
# the logs and the schedule.

resource "aws_kms_key" "main" {
  description         = "${var.name}: KeyPackage service secrets, environment and logs"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}-keypackage-service"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_111:This is a key policy: its "*" resource is the key itself.
  #checkov:skip=CKV_AWS_356:This is a key policy: its "*" resource is the key itself.
  #checkov:skip=CKV_AWS_109:This is a key policy: its "*" resource is the key itself, administered by the account (the default key policy).
  # The account administers the key through IAM (the default key policy).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts this service's log groups with it.
  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/${var.name}/*", "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/lambda/${var.name}-*"]
    }
  }
}

# The relay token (and any additional ones), comma-separated: KP_RELAY_TOKEN.
resource "random_password" "relay_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "relay_tokens" {
  #checkov:skip=CKV2_AWS_57:The relay token is rotated by replacing it in Terraform with the old one kept in additional_relay_tokens meanwhile (DEPLOY.md); a rotation Lambda could not update the relays.
  name        = "${var.name}/relay-tokens"
  description = "KP_RELAY_TOKEN of the KeyPackage service: the relay tokens, comma-separated"
  kms_key_id  = aws_kms_key.main.arn
}

resource "aws_secretsmanager_secret_version" "relay_tokens" {
  secret_id     = aws_secretsmanager_secret.relay_tokens.id
  secret_string = join(",", concat([random_password.relay_token.result], var.additional_relay_tokens))
}

# The Google service-account key the functions reach Firestore with. Terraform
# creates the secret only: its value (the key file, as binary) is put by the
# operator with the AWS CLI, so that the key never enters the Terraform state
# (DEPLOY.md).
resource "aws_secretsmanager_secret" "google_credentials" {
  #checkov:skip=CKV2_AWS_57:A Google service-account key is rotated in Google Cloud (a new key, then put-secret-value); Secrets Manager cannot create one.
  name        = "${var.name}/google-credentials"
  description = "Google service-account key (JSON, stored as SecretBinary) for Firestore"
  kms_key_id  = aws_kms_key.main.arn
}
