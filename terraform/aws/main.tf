# The KeyPackage service on AWS: one Lambda function per function binary
# (provided.al2023, the same binaries through lambda_http), an HTTP API
# routing the same paths as the Google Cloud gateway, EventBridge Scheduler
# running cleanup, and the Firestore service-account key in Secrets Manager.
# The data stays in Firestore. DEPLOY.md walks through it.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Each function and its timeout. `gateway` serves POST /v1/events.
  functions = {
    ingest  = { timeout = 60 }
    query   = { timeout = 30 }
    consume = { timeout = 60 }
    cleanup = { timeout = 120 }
    gateway = { timeout = 60 }
  }

  # The routes: the same OpenAPI file as API Gateway on Google Cloud, the one
  # routing table of both deployments (tests/openapi.rs checks it against
  # the code). Rendered with each backend address set to the function's
  # name, it maps "METHOD /path" to the function that serves it.
  spec = yamldecode(templatefile("${path.module}/../gcp/openapi.yaml", {
    for name, _ in local.functions : "${name}_url" => name
  }))
  routes = merge([
    for path, item in local.spec.paths : {
      for method, operation in item : "${upper(method)} ${path}" => operation["x-google-backend"].address
    }
  ]...)
}
