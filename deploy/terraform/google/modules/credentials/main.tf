# The metric writer on Google Cloud: a service account with
# roles/monitoring.metricWriter (monitoring.timeSeries.create) and its key,
# for the coordinator's EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE(_CONTENT).

terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "project" {
  type        = string
  default     = ""
  description = "The project; empty: the provider's."
}
variable "region" {
  type        = string
  default     = ""
  description = "Accepted as in the guide."
}
variable "resource_prefix" {
  type    = string
  default = ""
}

data "google_client_config" "current" {}

locals {
  project = var.project != "" ? var.project : data.google_client_config.current.project
}

resource "google_service_account" "metric_writer" {
  project      = local.project
  account_id   = "${var.resource_prefix == "" ? "" : "${var.resource_prefix}-"}executor-metric-writer"
  display_name = "execd coordinator: writes the executors' queue size"
}

resource "google_project_iam_member" "metric_writer" {
  project = local.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.metric_writer.email}"
}

resource "google_service_account_key" "metric_writer" {
  service_account_id = google_service_account.metric_writer.name
}

output "metric_writer_credentials_file" {
  description = "The service account's key file, base64-encoded."
  value       = google_service_account_key.metric_writer.private_key
  sensitive   = true
}
