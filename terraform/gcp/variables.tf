variable "project_id" {
  description = "The Google Cloud project to deploy into (it must have billing enabled)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services, the API gateway and the scheduler job. API Gateway runs in a few regions only (for example us-central1, us-east1, europe-west1, europe-west2, asia-northeast1, australia-southeast1)."
  type        = string
  default     = "us-central1"
}

variable "name" {
  description = "Prefix of every resource name (lowercase letters, digits and hyphens)."
  type        = string
  default     = "kp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}$", var.name))
    error_message = "name must start with a letter and have at most 15 lowercase letters, digits or hyphens."
  }
}

variable "image" {
  description = "The container image built from the repository's Dockerfile, for example us-central1-docker.pkg.dev/PROJECT/kp/keypackage-service:v1. Every function runs from it."
  type        = string
}

variable "firestore_database_id" {
  description = "The Firestore database. \"(default)\" gets Firestore's free daily quota; a named database does not. Terraform creates it: import it first if it already exists (see DEPLOY.md)."
  type        = string
  default     = "(default)"
}

variable "firestore_location" {
  description = "Firestore location: a multi-region (nam5, eur3) or a region (for example us-central1). It cannot be changed later."
  type        = string
  default     = "nam5"
}

variable "collection_prefix" {
  description = "KP_COLLECTION_PREFIX: a prefix of every collection name, so that several deployments can share one database. The indexes are declared under the prefixed names."
  type        = string
  default     = ""
}

variable "cpu" {
  description = "CPU limit of each Cloud Run instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit of each Cloud Run instance."
  type        = string
  default     = "512Mi"
}

variable "max_instances" {
  description = "Most instances of each Cloud Run service."
  type        = number
  default     = 10
}

variable "min_instances" {
  description = "Instances of each Cloud Run service kept warm (0 scales to zero; 1 removes cold starts at the price of an idle instance)."
  type        = number
  default     = 0
}

variable "concurrency" {
  description = "Most concurrent requests per Cloud Run instance."
  type        = number
  default     = 80
}

variable "settings" {
  description = "Further configuration variables of API.md for every function, for example { KP_MAX_PER_OWNER = \"20\", RUST_LOG = \"info\" }. KP_STORE, FIRESTORE_*, KP_COLLECTION_PREFIX, KP_RELAY_TOKEN, KP_PUBLIC_URL and KP_PLATFORM_* are set by this module."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.settings), [
      "KP_STORE", "FIRESTORE_PROJECT_ID", "FIRESTORE_DATABASE_ID", "FIRESTORE_EMULATOR_HOST",
      "KP_COLLECTION_PREFIX", "KP_RELAY_TOKEN", "KP_LISTEN", "PORT", "KP_PUBLIC_URL",
      "KP_PLATFORM_AUTHENTICATED", "KP_PLATFORM_INVOKERS",
    ])) == 0
    error_message = "settings must not set the variables this module sets itself."
  }
}

variable "public_url" {
  description = "KP_PUBLIC_URL: the base URL owners sign in their NIP-98 `u` tag, that is the gateway_url output (or your own domain in front of it). Empty until the first apply has created the gateway; set it then and apply again (DEPLOY.md)."
  type        = string
  default     = ""
}

variable "additional_relay_tokens" {
  description = "Relay tokens accepted besides the generated one: put the old token here while relays move to a new one (see DEPLOY.md, rotating the token)."
  type        = list(string)
  default     = []
  sensitive   = true
}

variable "cleanup_schedule" {
  description = "When Cloud Scheduler runs cleanup (cron syntax, UTC)."
  type        = string
  default     = "*/15 * * * *"
}

variable "alert_email" {
  description = "Address that receives the alerts; empty creates the alert policies without a notification channel."
  type        = string
  default     = ""
}

variable "error_rate_threshold" {
  description = "Alert when this fraction of a function's requests answer 5xx over 5 minutes."
  type        = number
  default     = 0.05
}

variable "unavailable_rate_threshold" {
  description = "Alert when a function answers more 503s than this per second over 5 minutes."
  type        = number
  default     = 0.05
}

variable "store_latency_threshold_ms" {
  description = "Alert when the 99th percentile of Firestore request latency stays above this for 10 minutes."
  type        = number
  default     = 1000
}

variable "deletion_protection" {
  description = "Protect the Firestore database and the Cloud Run services from terraform destroy."
  type        = bool
  default     = true
}
