# Cloud Monitoring: a dashboard, and alert policies for the error rate, 503s,
# cleanup failures and store latency.
#
# Cloud Run's own metrics give requests, status codes and latencies per
# function. The functions' Prometheus metrics (/metrics) are not collected on
# Cloud Run; store latency is watched through Firestore's request latency and
# through the functions' log lines that report a store that failed or timed
# out (the `store unavailable` and `store call timed out` warnings).

locals {
  service_names   = [for name, _ in local.functions : "${var.name}-${name}"]
  services_filter = "resource.labels.service_name = one_of(${join(", ", [for s in local.service_names : "\"${s}\""])})"
  requests        = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND ${local.services_filter}"
  cleanup_service = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND resource.labels.service_name = \"${var.name}-cleanup\""
  firestore       = "resource.type = \"firestore.googleapis.com/Database\" AND resource.labels.database_id = \"${var.firestore_database_id}\""
  # A log-based metric keeps the monitored resource of its log entries.
  store_errors = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.store_errors.name}\""
  channels     = [for channel in google_monitoring_notification_channel.email : channel.id]
}

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == "" ? 0 : 1

  display_name = "${var.name} alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.api]
}

# Counts the warnings a function logs when a store call fails or times out
# (each answers 503 with Retry-After).
resource "google_logging_metric" "store_errors" {
  name        = "${var.name}-store-errors"
  description = "Store calls of the KeyPackage service that failed or timed out"
  filter = join(" AND ", [
    "resource.type = \"cloud_run_revision\"",
    "resource.labels.service_name = (${join(" OR ", [for s in local.service_names : "\"${s}\""])})",
    "jsonPayload.message = (\"store unavailable\" OR \"store call timed out\")",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "error_rate" {
  display_name          = "${var.name}: 5xx error rate"
  combiner              = "OR"
  notification_channels = local.channels

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${var.error_rate_threshold * 100}% of a function's requests answered 5xx over 5 minutes. 503s mean the store failed or timed out (see the store alerts); 500s mean a stored document could not be read: check the function's logs (severity ERROR)."
  }

  conditions {
    display_name = "5xx share of requests"
    condition_threshold {
      filter             = "${local.requests} AND metric.labels.response_code_class = \"5xx\""
      denominator_filter = local.requests
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_rate_threshold
      duration           = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }

      trigger {
        count = 1
      }
    }
  }
}

resource "google_monitoring_alert_policy" "unavailable" {
  display_name          = "${var.name}: 503 Service Unavailable"
  combiner              = "OR"
  notification_channels = local.channels

  documentation {
    mime_type = "text/markdown"
    content   = "A function answers 503: its store calls fail or exceed KP_STORE_TIMEOUT_MS, or Cloud Run has no instance to serve (max instances reached). Relays retry after Retry-After. Check Firestore's status and latency, and the function's `store unavailable` log lines."
  }

  conditions {
    display_name = "503 responses per second"
    condition_threshold {
      filter          = "${local.requests} AND metric.labels.response_code = \"503\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.unavailable_rate_threshold
      duration        = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }

      trigger {
        count = 1
      }
    }
  }
}

resource "google_monitoring_alert_policy" "cleanup" {
  display_name          = "${var.name}: cleanup failing"
  combiner              = "OR"
  notification_channels = local.channels

  documentation {
    mime_type = "text/markdown"
    content   = "Cleanup (Cloud Scheduler job ${var.name}-cleanup, POST /v1/cleanup on ${var.name}-cleanup) fails or has not succeeded for an hour. Expired KeyPackages stay invisible to relays, but tombstones and audit records pile up. Check the job's last attempt in Cloud Scheduler and the cleanup function's logs."
  }

  conditions {
    display_name = "cleanup answers an error"
    condition_threshold {
      filter          = "${local.cleanup_service} AND metric.labels.response_code_class = one_of(\"4xx\", \"5xx\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 2
      duration        = "0s"

      aggregations {
        alignment_period     = "1800s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "no successful cleanup for an hour"
    condition_absent {
      filter   = "${local.cleanup_service} AND metric.labels.response_code_class = \"2xx\""
      duration = "3600s"

      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }
}

resource "google_monitoring_alert_policy" "store_latency" {
  display_name          = "${var.name}: store latency"
  combiner              = "OR"
  notification_channels = local.channels

  documentation {
    mime_type = "text/markdown"
    content   = "Firestore is slow or failing for the KeyPackage service: its 99th percentile request latency is above ${var.store_latency_threshold_ms} ms, or the functions log failed or timed-out store calls. Every store call has a deadline of KP_STORE_TIMEOUT_MS (default 10 s), after which the function answers 503."
  }

  conditions {
    display_name = "Firestore p99 request latency"
    condition_threshold {
      filter          = "${local.firestore} AND metric.type = \"firestore.googleapis.com/api/request_latencies\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.store_latency_threshold_ms / 1000
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "store calls failing or timing out"
    condition_threshold {
      filter          = local.store_errors
      comparison      = "COMPARISON_GT"
      threshold_value = 5
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }
}

locals {
  # A dashboard tile: one chart of `filter`, aligned by `aligner`, summed (or
  # reduced by `reducer`) by `group_by`.
  tiles = [
    { title = "Requests per second by function", filter = local.requests, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["resource.labels.service_name"] },
    { title = "Requests per second by status class", filter = local.requests, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["metric.labels.response_code_class"] },
    { title = "5xx per second by function", filter = "${local.requests} AND metric.labels.response_code_class = \"5xx\"", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["resource.labels.service_name"] },
    { title = "503 per second by function", filter = "${local.requests} AND metric.labels.response_code = \"503\"", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["resource.labels.service_name"] },
    { title = "Request latency p95 (ms) by function", filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_latencies\" AND ${local.services_filter}", aligner = "ALIGN_PERCENTILE_95", reducer = "REDUCE_MAX", group_by = ["resource.labels.service_name"] },
    { title = "Instances by function", filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/container/instance_count\" AND ${local.services_filter}", aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group_by = ["resource.labels.service_name"] },
    { title = "Firestore request latency p99 (s)", filter = "${local.firestore} AND metric.type = \"firestore.googleapis.com/api/request_latencies\"", aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", group_by = [] },
    { title = "Firestore document reads per second", filter = "${local.firestore} AND metric.type = \"firestore.googleapis.com/document/read_ops_count\"", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = [] },
    { title = "Firestore document writes per second", filter = "${local.firestore} AND metric.type = \"firestore.googleapis.com/document/write_ops_count\"", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = [] },
    { title = "Firestore document deletes per second", filter = "${local.firestore} AND metric.type = \"firestore.googleapis.com/document/delete_ops_count\"", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = [] },
    { title = "Store calls failed or timed out", filter = local.store_errors, aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group_by = [] },
    { title = "Cleanup runs by status class", filter = local.cleanup_service, aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group_by = ["metric.labels.response_code_class"] },
  ]
}

resource "google_monitoring_dashboard" "main" {
  dashboard_json = jsonencode({
    displayName = "KeyPackage service (${var.name})"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, tile in local.tiles : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = tile.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = tile.filter
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = tile.aligner
                      crossSeriesReducer = tile.reducer
                      groupByFields      = tile.group_by
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })

  depends_on = [google_project_service.api]
}
