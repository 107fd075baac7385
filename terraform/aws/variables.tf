variable "region" {
  description = "The AWS region of the functions, the HTTP API and the secrets."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "kp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must start with a letter and have at most 20 lowercase letters, digits or hyphens."
  }
}

variable "lambda_zip_dir" {
  description = "Directory holding ingest.zip, query.zip, consume.zip, cleanup.zip and gateway.zip, as built from the Dockerfile's `lambda` target (see DEPLOY.md)."
  type        = string
  default     = "../../dist/lambda"
}

variable "architecture" {
  description = "Instruction set of the Lambda zips: x86_64, or arm64 when they were built with --platform linux/arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "secrets_extension_layer_arn" {
  description = "ARN of the AWS Parameters and Secrets Lambda Extension layer for this region and architecture (AWS publishes the list; see DEPLOY.md). The bootstrap reads the secrets through it."
  type        = string
}

variable "firestore_project_id" {
  description = "The Google Cloud project that holds the Firestore database."
  type        = string
}

variable "firestore_database_id" {
  description = "The Firestore database."
  type        = string
  default     = "(default)"
}

variable "collection_prefix" {
  description = "KP_COLLECTION_PREFIX: a prefix of every collection name."
  type        = string
  default     = ""
}

variable "memory_mb" {
  description = "Memory of each function (Lambda gives CPU in proportion)."
  type        = number
  default     = 256
}

variable "reserved_concurrency" {
  description = "Most concurrent executions of each function (reserved out of the account's concurrency). -1 leaves the functions unreserved, which new accounts with a small concurrency quota need."
  type        = number
  default     = 50
}

variable "settings" {
  description = "Further configuration variables of API.md for every function, for example { KP_MAX_PER_OWNER = \"20\" }. KP_STORE, FIRESTORE_*, KP_COLLECTION_PREFIX and KP_RELAY_TOKEN are set by this module."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.settings), [
      "KP_STORE", "FIRESTORE_PROJECT_ID", "FIRESTORE_DATABASE_ID", "FIRESTORE_EMULATOR_HOST",
      "KP_COLLECTION_PREFIX", "KP_RELAY_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "KP_PUBLIC_URL",
    ])) == 0
    error_message = "settings must not set the variables this module sets itself."
  }
}

variable "additional_relay_tokens" {
  description = "Relay tokens accepted besides the generated one, while relays move to a new one."
  type        = list(string)
  default     = []
  sensitive   = true
}

variable "cleanup_schedule" {
  description = "When EventBridge Scheduler runs cleanup (a rate() or cron() expression)."
  type        = string
  default     = "rate(15 minutes)"
}

variable "log_retention_days" {
  description = "How long CloudWatch keeps the functions' and the API's logs."
  type        = number
  default     = 365
}

variable "throttle_rate" {
  description = "Steady requests per second the HTTP API admits (all routes together)."
  type        = number
  default     = 500
}

variable "throttle_burst" {
  description = "Burst of requests the HTTP API admits."
  type        = number
  default     = 1000
}
