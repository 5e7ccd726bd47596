# The metric writer on AWS: an IAM user allowed cloudwatch:PutMetricData, and
# its access key, for the coordinator's EXECUTOR_METRIC_AWS_ACCESS_KEY_ID and
# EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "region" {
  type        = string
  default     = ""
  description = "Accepted as in the guide; the provider's region is used."
}
variable "resource_prefix" {
  type    = string
  default = ""
}

locals {
  name = "${var.resource_prefix == "" ? "" : "${var.resource_prefix}-"}executor-metric-writer"
}

resource "aws_iam_user" "metric_writer" {
  name = local.name
}

data "aws_iam_policy_document" "metric_writer" {
  statement {
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["sourcegraph-executor"]
    }
  }
}

resource "aws_iam_user_policy" "metric_writer" {
  name   = local.name
  user   = aws_iam_user.metric_writer.name
  policy = data.aws_iam_policy_document.metric_writer.json
}

resource "aws_iam_access_key" "metric_writer" {
  user = aws_iam_user.metric_writer.name
}

output "metric_writer_access_key_id" {
  value = aws_iam_access_key.metric_writer.id
}

output "metric_writer_secret_key" {
  value     = aws_iam_access_key.metric_writer.secret
  sensitive = true
}
