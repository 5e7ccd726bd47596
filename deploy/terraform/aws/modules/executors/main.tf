# The executor instances on AWS: a launch template whose user data is the
# start-up script, an auto scaling group, and, when max_replicas >
# min_replicas, alarms on CEIL(queue / jobs_per_instance_scaling) - instances.
# Naming, validation and arithmetic are in ../../../modules/scaling (tested
# with tofu test); the script in ../../../modules/startup.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "vpc_id" { type = string }
variable "subnet_id" { type = string }
variable "resource_prefix" {
  type    = string
  default = ""
}
variable "availability_zone" {
  type    = string
  default = "us-west-2a"
}
variable "machine_image" {
  type        = string
  default     = ""
  description = "An AMI; empty: the newest Debian 12 amd64 AMI."
}
variable "machine_type" {
  type        = string
  default     = "c5n.metal"
  description = "Firecracker needs KVM, which on AWS means a .metal type; with use_firecracker = false any type works."
}
variable "boot_disk_size" {
  type    = number
  default = 500
}
variable "preemptible_machines" {
  type    = bool
  default = false
}
variable "instance_tag" { type = string }
variable "sourcegraph_external_url" { type = string }
variable "sourcegraph_executor_proxy_password" {
  type      = string
  sensitive = true
}
variable "queue_name" {
  type    = string
  default = ""
}
variable "queue_names" {
  type    = list(string)
  default = []
}
variable "metrics_environment_label" { type = string }
variable "min_replicas" {
  type    = number
  default = 1
}
variable "max_replicas" {
  type    = number
  default = 1
}
variable "jobs_per_instance_scaling" {
  type    = number
  default = 360
}
variable "executor_release_url" { type = string }
variable "maximum_runtime_per_job" {
  type    = string
  default = "30m"
}
variable "maximum_num_jobs" {
  type    = number
  default = 1
}
variable "num_total_jobs" {
  type    = number
  default = 0
}
variable "max_active_time" {
  type    = string
  default = "0"
}
variable "job_num_cpus" {
  type    = number
  default = 4
}
variable "job_memory" {
  type    = string
  default = "12G"
}
variable "firecracker_disk_space" {
  type    = string
  default = "20G"
}
variable "use_firecracker" {
  type    = bool
  default = true
}
variable "docker_registry_mirror" {
  type    = string
  default = ""
}
variable "docker_auth_config" {
  type      = string
  default   = ""
  sensitive = true
}

module "scaling" {
  source = "../../../modules/scaling"

  queue_name                = var.queue_name
  queue_names               = var.queue_names
  metrics_environment_label = var.metrics_environment_label
  resource_prefix           = var.resource_prefix
  instance_tag              = var.instance_tag
  min_replicas              = var.min_replicas
  max_replicas              = var.max_replicas
  jobs_per_instance_scaling = var.jobs_per_instance_scaling
}

module "startup" {
  source = "../../../modules/startup"

  executor_release_url                = var.executor_release_url
  sourcegraph_external_url            = var.sourcegraph_external_url
  sourcegraph_executor_proxy_password = var.sourcegraph_executor_proxy_password
  queues                              = module.scaling.queues
  maximum_runtime_per_job             = var.maximum_runtime_per_job
  maximum_num_jobs                    = var.maximum_num_jobs
  num_total_jobs                      = var.num_total_jobs
  max_active_time                     = var.max_active_time
  job_num_cpus                        = var.job_num_cpus
  job_memory                          = var.job_memory
  firecracker_disk_space              = var.firecracker_disk_space
  use_firecracker                     = var.use_firecracker
  docker_registry_mirror              = var.docker_registry_mirror
  docker_auth_config                  = var.docker_auth_config
}

data "aws_ami" "debian" {
  count       = var.machine_image == "" ? 1 : 0
  most_recent = true
  owners      = ["136693071363"] # Debian
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

resource "aws_security_group" "executor" {
  name   = module.scaling.name
  vpc_id = var.vpc_id

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_launch_template" "executor" {
  name_prefix   = "${module.scaling.name}-"
  image_id      = var.machine_image != "" ? var.machine_image : data.aws_ami.debian[0].id
  instance_type = var.machine_type
  user_data     = base64encode(module.startup.executor_script)

  # A clean exit of the executor powers the machine off; the group replaces it.
  instance_initiated_shutdown_behavior = "terminate"

  vpc_security_group_ids = [aws_security_group.executor.id]

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.boot_disk_size
      volume_type           = "gp3"
      delete_on_termination = true
    }
  }

  dynamic "instance_market_options" {
    for_each = var.preemptible_machines ? [1] : []
    content {
      market_type = "spot"
    }
  }

  metadata_options {
    http_tokens = "required"
  }

  tag_specifications {
    resource_type = "instance"
    tags = {
      Name                = module.scaling.name
      executor_tag        = var.instance_tag
      executor_queue_name = module.scaling.metric_queue
    }
  }
}

resource "aws_autoscaling_group" "executor" {
  name                = module.scaling.name
  min_size            = var.min_replicas
  max_size            = var.max_replicas
  vpc_zone_identifier = [var.subnet_id]
  metrics_granularity = "1Minute"
  enabled_metrics     = ["GroupInServiceInstances"]

  launch_template {
    id      = aws_launch_template.executor.id
    version = aws_launch_template.executor.latest_version
  }

  tag {
    key                 = "Name"
    value               = module.scaling.name
    propagate_at_launch = true
  }

  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

locals {
  autoscaling = var.max_replicas > var.min_replicas
  # The alarms: the queue's instances wanted minus the instances in service.
  alarms = {
    up   = { operator = "GreaterThanOrEqualToThreshold", threshold = 1 }
    down = { operator = "LessThanOrEqualToThreshold", threshold = -1 }
  }
}

resource "aws_autoscaling_policy" "executor" {
  for_each               = local.autoscaling ? local.alarms : {}
  name                   = "${module.scaling.name}-scale-${each.key}"
  autoscaling_group_name = aws_autoscaling_group.executor.name
  policy_type            = "StepScaling"
  adjustment_type        = "ChangeInCapacity"

  # The alarm's value is the number of instances missing (up) or extra
  # (down); each step adds or removes about that many.
  dynamic "step_adjustment" {
    for_each = each.key == "up" ? [[0, 4, 1], [4, 16, 4], [16, null, 16]] : [[-4, 0, -1], [-16, -4, -4], [null, -16, -16]]
    content {
      metric_interval_lower_bound = step_adjustment.value[0]
      metric_interval_upper_bound = step_adjustment.value[1]
      scaling_adjustment          = step_adjustment.value[2]
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "executor" {
  for_each            = local.autoscaling ? local.alarms : {}
  alarm_name          = "${module.scaling.name}-scale-${each.key}"
  comparison_operator = each.value.operator
  threshold           = each.value.threshold
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "ignore"
  alarm_actions       = [aws_autoscaling_policy.executor[each.key].arn]

  metric_query {
    id          = "desired"
    expression  = "CEIL(queue / ${var.jobs_per_instance_scaling}) - instances"
    label       = "instances wanted minus instances in service"
    return_data = true
  }

  metric_query {
    id = "queue"
    metric {
      namespace   = "sourcegraph-executor"
      metric_name = "src_executors_queue_size"
      period      = 60
      stat        = "Maximum"
      dimensions = {
        queueName   = module.scaling.metric_queue
        environment = var.metrics_environment_label
      }
    }
  }

  metric_query {
    id = "instances"
    metric {
      namespace   = "AWS/AutoScaling"
      metric_name = "GroupInServiceInstances"
      period      = 60
      stat        = "Average"
      dimensions = {
        AutoScalingGroupName = aws_autoscaling_group.executor.name
      }
    }
  }
}

output "autoscaling_group_name" {
  value = aws_autoscaling_group.executor.name
}

output "security_group_id" {
  value = aws_security_group.executor.id
}
