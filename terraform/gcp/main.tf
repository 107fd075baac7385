# The KeyPackage service on Google Cloud: Firestore, one Cloud Run service per
# function from one image, an API gateway in front, Cloud Scheduler running
# cleanup, the relay token in Secret Manager, and monitoring. DEPLOY.md walks
# through it.

locals {
  # Each function: its binary in the image (/usr/local/bin/<binary>), its
  # request timeout, and the Firestore role it needs. Every function writes:
  # `query` too, since its owner routes (NIP-98) record each auth event they
  # accept, so that it cannot be replayed.
  # `gateway` serves POST /v1/events, which dispatches by kind to ingest,
  # Welcome consumption and deletion, so it writes.
  functions = {
    ingest  = { timeout_seconds = 60, firestore_role = "roles/datastore.user" }
    query   = { timeout_seconds = 60, firestore_role = "roles/datastore.user" }
    consume = { timeout_seconds = 60, firestore_role = "roles/datastore.user" }
    cleanup = { timeout_seconds = 120, firestore_role = "roles/datastore.user" }
    gateway = { timeout_seconds = 60, firestore_role = "roles/datastore.user" }
  }

  apis = [
    "apigateway.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicecontrol.googleapis.com",
    "servicemanagement.googleapis.com",
  ]
}

resource "google_project_service" "api" {
  for_each = toset(local.apis)

  service            = each.value
  disable_on_destroy = false
}

# --- Firestore -------------------------------------------------------------

resource "google_firestore_database" "main" {
  name        = var.firestore_database_id
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"
  # The backend never uses Firestore transactions (it commits with an
  # update_time precondition), so the concurrency mode does not matter to it.
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.api]
}

# The indexes come from firestore.indexes.json at the repository root, the
# one declaration that shared/kp-firestore/src/queries.rs checks against every
# query the backend issues.
locals {
  firestore_indexes = jsondecode(file("${path.module}/../../firestore.indexes.json"))

  composite_indexes = {
    for index in local.firestore_indexes.indexes :
    "${index.collectionGroup}(${join(",", [for f in index.fields : "${f.fieldPath} ${lookup(f, "order", lookup(f, "arrayConfig", ""))}"])})" => index
  }

  field_overrides = {
    for override in local.firestore_indexes.fieldOverrides :
    "${override.collectionGroup}.${override.fieldPath}" => override
  }
}

resource "google_firestore_index" "composite" {
  for_each = local.composite_indexes

  database    = google_firestore_database.main.name
  collection  = "${var.collection_prefix}${each.value.collectionGroup}"
  query_scope = lookup(each.value, "queryScope", "COLLECTION")

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = lookup(fields.value, "order", null)
      array_config = lookup(fields.value, "arrayConfig", null)
    }
  }
}

# Field overrides: an empty `indexes` list exempts the field from indexing
# (an empty index_config block); `"ttl": true` declares the field of a TTL
# policy. The one TTL field is keypackage_audit.expire_at, the one field the
# Firestore backend writes as a Timestamp (every other time is integer
# seconds): Firestore deletes an audit record once it is past
# KP_AUDIT_RETENTION_SECS, typically within 24 hours. The cleanup function
# also deletes them on the schedule (scheduler.tf), so retention holds even
# while TTL deletion lags. The field keeps its ascending index, for cleanup's
# range query.
resource "google_firestore_field" "override" {
  for_each = local.field_overrides

  database   = google_firestore_database.main.name
  collection = "${var.collection_prefix}${each.value.collectionGroup}"
  field      = each.value.fieldPath

  index_config {
    dynamic "indexes" {
      for_each = lookup(each.value, "indexes", [])
      content {
        query_scope  = lookup(indexes.value, "queryScope", "COLLECTION")
        order        = lookup(indexes.value, "order", null)
        array_config = lookup(indexes.value, "arrayConfig", null)
      }
    }
  }

  dynamic "ttl_config" {
    for_each = lookup(each.value, "ttl", false) ? [true] : []
    content {}
  }
}
