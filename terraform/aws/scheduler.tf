# EventBridge Scheduler invokes the cleanup function directly. The event is
# not an HTTP request: lambda_http hands it to the cleanup binary as
# `POST /events`, which runs cleanup with the event's `time_budget_ms` (it
# needs no relay token: it is not reachable through the HTTP API).

resource "aws_scheduler_schedule" "cleanup" {
  name                = "${var.name}-cleanup"
  description         = "Runs the KeyPackage service's cleanup"
  schedule_expression = var.cleanup_schedule
  kms_key_arn         = aws_kms_key.main.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.function["cleanup"].arn
    role_arn = aws_iam_role.scheduler.arn
    # The budget stays below the function's 120 s timeout, with room for
    # the store deadline (KP_STORE_TIMEOUT_MS) after it.
    input = jsonencode({ time_budget_ms = 90000 })

    retry_policy {
      maximum_retry_attempts       = 2
      maximum_event_age_in_seconds = 600
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-cleanup-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeCleanup"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.function["cleanup"].arn]
  }

  statement {
    sid       = "DecryptScheduleInput"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "${var.name}-cleanup-scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
