# The docker registry mirror on AWS: one machine at a static private IP
# running the distribution registry as a pull-through cache of Docker Hub on
# :5000 (metrics on :9999), reachable from the executors' subnet only.

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
variable "ip_cidr" {
  type        = string
  description = "The executors' subnet, allowed to reach the mirror."
}
variable "static_ip" {
  type        = string
  default     = "10.0.1.4"
  description = "The mirror's private IP, inside the subnet."
}
variable "resource_prefix" {
  type    = string
  default = ""
}
variable "machine_image" {
  type    = string
  default = ""
}
variable "machine_type" {
  type    = string
  default = "m5.large"
}
variable "boot_disk_size" {
  type    = number
  default = 64
}
variable "disk_size" {
  type    = number
  default = 64
}

module "startup" {
  source = "../../../modules/startup"

  # Only the mirror's script is used; the executor's needs these to render.
  executor_release_url                = "https://unused.invalid"
  sourcegraph_external_url            = "https://unused.invalid"
  sourcegraph_executor_proxy_password = "unused-unused-unused"
  queues                              = ["unused"]
}

locals {
  name = "${var.resource_prefix == "" ? "" : "${var.resource_prefix}-"}executors-docker-registry-mirror"
}

data "aws_ami" "debian" {
  count       = var.machine_image == "" ? 1 : 0
  most_recent = true
  owners      = ["136693071363"]
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

resource "aws_security_group" "mirror" {
  name   = local.name
  vpc_id = var.vpc_id

  ingress {
    description = "registry"
    from_port   = 5000
    to_port     = 5000
    protocol    = "tcp"
    cidr_blocks = [var.ip_cidr]
  }
  ingress {
    description = "registry metrics"
    from_port   = 9999
    to_port     = 9999
    protocol    = "tcp"
    cidr_blocks = [var.ip_cidr]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "mirror" {
  ami                    = var.machine_image != "" ? var.machine_image : data.aws_ami.debian[0].id
  instance_type          = var.machine_type
  subnet_id              = var.subnet_id
  private_ip             = var.static_ip
  vpc_security_group_ids = [aws_security_group.mirror.id]
  user_data              = module.startup.mirror_script

  root_block_device {
    volume_size = var.boot_disk_size
    volume_type = "gp3"
  }

  ebs_block_device {
    device_name = "/dev/sdb"
    volume_size = var.disk_size
    volume_type = "gp3"
  }

  tags = { Name = local.name }
}

output "mirror_url" {
  value = "http://${var.static_ip}:5000"
}
