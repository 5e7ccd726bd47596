# Provider-free: the naming, validation and scaling arithmetic that the AWS
# and Google modules share. Checked by `tofu validate` and `tofu test` in CI.

terraform {
  required_version = ">= 1.6"
}

variable "queue_name" {
  type        = string
  default     = ""
  description = "The single queue the executors process (e.g. batches, codeintel). Exactly one of queue_name and queue_names."
}

variable "queue_names" {
  type        = list(string)
  default     = []
  description = "Several queues the executors process. Exactly one of queue_name and queue_names."

  validation {
    condition     = alltrue([for q in var.queue_names : can(regex("^[a-z][a-z0-9_-]*$", q))])
    error_message = "Each of queue_names must be a queue name: lower-case letters, digits, '_' and '-', starting with a letter."
  }
}

variable "metrics_environment_label" {
  type        = string
  description = "The environment label of the queue-size metric; the coordinator's EXECUTOR_METRIC_ENVIRONMENT_LABEL must be the same."

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]+$", var.metrics_environment_label))
    error_message = "metrics_environment_label must be non-empty: letters, digits, '_' and '-'."
  }
}

variable "resource_prefix" {
  type        = string
  default     = ""
  description = "Prefixed to every resource's name, to run several deployments in one project or account."

  validation {
    condition     = can(regex("^([a-z][a-z0-9-]*)?$", var.resource_prefix))
    error_message = "resource_prefix must be empty or lower-case letters, digits and '-', starting with a letter."
  }
}

variable "instance_tag" {
  type        = string
  default     = ""
  description = "The executors' instance tag (executor_instance_tag)."
}

variable "min_replicas" {
  type        = number
  default     = 1
  description = "The fewest executor instances."

  validation {
    condition     = var.min_replicas >= 0 && floor(var.min_replicas) == var.min_replicas
    error_message = "min_replicas must be a whole number >= 0."
  }
}

variable "max_replicas" {
  type        = number
  default     = 1
  description = "The most executor instances. Auto scaling is on only when max_replicas > min_replicas."

  validation {
    condition     = var.max_replicas >= 1 && floor(var.max_replicas) == var.max_replicas
    error_message = "max_replicas must be a whole number >= 1."
  }
}

variable "jobs_per_instance_scaling" {
  type        = number
  default     = 360
  description = "The autoscaler holds one instance per this many jobs in the queue."

  validation {
    condition     = var.jobs_per_instance_scaling >= 1 && floor(var.jobs_per_instance_scaling) == var.jobs_per_instance_scaling
    error_message = "jobs_per_instance_scaling must be a whole number >= 1."
  }
}

variable "queue_size" {
  type        = number
  default     = 0
  description = "A queue size to compute desired_instances for (what the cloud autoscalers compute from the metric); for tests and plans."

  validation {
    condition     = var.queue_size >= 0
    error_message = "queue_size must be >= 0."
  }
}

locals {
  # The names the coordinator publishes under (internal/autoscale/cloudwatch
  # and internal/autoscale/gcp; a Go test checks them against these).
  aws_metric_namespace = "sourcegraph-executor"
  aws_metric_name      = "src_executors_queue_size"
  google_metric_type   = "custom.googleapis.com/executors/queue/size"
  label_queue          = "queueName"
  label_environment    = "environment"

  # A multi-queue executor's metric is published under its sorted queue
  # names joined by "_".
  metric_queue = var.queue_name != "" ? var.queue_name : join("_", sort(var.queue_names))
  queues       = var.queue_name != "" ? [var.queue_name] : sort(var.queue_names)

  autoscaling = var.max_replicas > var.min_replicas

  # One instance per jobs_per_instance_scaling jobs, clamped to the replicas.
  wanted            = ceil(var.queue_size / var.jobs_per_instance_scaling)
  desired_instances = local.autoscaling ? min(var.max_replicas, max(var.min_replicas, local.wanted)) : var.min_replicas

  name_prefix = var.resource_prefix == "" ? "" : "${var.resource_prefix}-"
  name        = "${local.name_prefix}executors${var.instance_tag == "" ? "" : "-${var.instance_tag}"}"
}

# Cross-variable checks: validation blocks see only their own variable in
# older releases, so they live on a provider-free resource.
resource "terraform_data" "inputs" {
  input = local.metric_queue

  lifecycle {
    precondition {
      condition     = (var.queue_name != "") != (length(var.queue_names) > 0)
      error_message = "Set exactly one of executor_queue_name (queue_name) and queue_names."
    }
    precondition {
      condition     = var.max_replicas >= var.min_replicas
      error_message = "max_replicas must be >= min_replicas (auto scaling needs max_replicas > min_replicas >= 0)."
    }
    precondition {
      condition     = var.queue_name == "" || can(regex("^[a-z][a-z0-9_-]*$", var.queue_name))
      error_message = "queue_name must be a queue name: lower-case letters, digits, '_' and '-', starting with a letter."
    }
  }
}

output "autoscaling_enabled" {
  value       = local.autoscaling
  description = "Whether an autoscaler is created: max_replicas > min_replicas."
}

output "desired_instances" {
  value       = local.desired_instances
  description = "The instances the autoscalers hold for queue_size: ceil(queue_size / jobs_per_instance_scaling), clamped to [min_replicas, max_replicas]."
}

output "metric_queue" {
  value       = terraform_data.inputs.output
  description = "The queueName label of the metric: the queue, or the sorted queues joined by '_'."
}

output "queues" {
  value = local.queues
}

output "name" {
  value       = local.name
  description = "The base name of the executors' resources."
}

output "name_prefix" {
  value = local.name_prefix
}

output "aws_metric_namespace" {
  value = local.aws_metric_namespace
}

output "aws_metric_name" {
  value = local.aws_metric_name
}

output "google_metric_type" {
  value = local.google_metric_type
}

output "label_queue" {
  value = local.label_queue
}

output "label_environment" {
  value = local.label_environment
}

output "aws_scaling_expression" {
  value       = "CEIL(queue / ${var.jobs_per_instance_scaling}) - instances"
  description = "The CloudWatch metric math the AWS alarms evaluate (queue: the queue size; instances: the group's in-service instances)."
}

output "google_single_instance_assignment" {
  value       = var.jobs_per_instance_scaling
  description = "The Google autoscaler's single_instance_assignment: one instance per this many jobs."
}
