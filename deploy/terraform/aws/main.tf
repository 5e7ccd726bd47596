# execd executors on AWS: the network, the docker registry mirror and an auto
# scaling group of executors. The guide's module block works with only its
# source changed:
#
#   module "executors" {
#     source = "github.com/execd/execd//deploy/terraform/aws"
#     executor_sourcegraph_external_url            = "<coordinator URL>"
#     ...
#   }

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "availability_zone" {
  type    = string
  default = "us-west-2a"
}

locals {
  queue_names = length(var.executor_queue_names) > 0 ? var.executor_queue_names : var.queue_names
  mirror      = var.executor_docker_registry_mirror != "" ? var.executor_docker_registry_mirror : module.docker-mirror.mirror_url
}

module "networking" {
  source = "./modules/networking"

  availability_zone = var.availability_zone
  resource_prefix   = var.resource_prefix
}

module "docker-mirror" {
  source = "./modules/docker-mirror"

  vpc_id          = module.networking.vpc_id
  subnet_id       = module.networking.subnet_id
  ip_cidr         = module.networking.ip_cidr
  static_ip       = var.docker_mirror_static_ip
  resource_prefix = var.resource_prefix
}

module "executors" {
  source = "./modules/executors"

  vpc_id                              = module.networking.vpc_id
  subnet_id                           = module.networking.subnet_id
  availability_zone                   = var.availability_zone
  resource_prefix                     = var.resource_prefix
  machine_image                       = var.executor_machine_image
  machine_type                        = var.executor_machine_type != "" ? var.executor_machine_type : (var.executor_use_firecracker ? "c5n.metal" : "c5.xlarge")
  boot_disk_size                      = var.executor_boot_disk_size
  preemptible_machines                = var.executor_preemptible_machines
  instance_tag                        = var.executor_instance_tag
  sourcegraph_external_url            = var.executor_sourcegraph_external_url
  sourcegraph_executor_proxy_password = var.executor_sourcegraph_executor_proxy_password
  queue_name                          = var.executor_queue_name
  queue_names                         = local.queue_names
  metrics_environment_label           = var.executor_metrics_environment_label
  min_replicas                        = var.min_replicas
  max_replicas                        = var.max_replicas
  jobs_per_instance_scaling           = var.jobs_per_instance_scaling
  executor_release_url                = var.executor_release_url
  maximum_runtime_per_job             = var.executor_maximum_runtime_per_job
  maximum_num_jobs                    = var.executor_maximum_num_jobs
  num_total_jobs                      = var.executor_num_total_jobs
  max_active_time                     = var.executor_max_active_time
  job_num_cpus                        = var.executor_job_num_cpus
  job_memory                          = var.executor_job_memory
  firecracker_disk_space              = var.executor_firecracker_disk_space
  use_firecracker                     = var.executor_use_firecracker
  docker_registry_mirror              = local.mirror
  docker_auth_config                  = var.executor_docker_auth_config
}

output "autoscaling_group_name" {
  value = module.executors.autoscaling_group_name
}

output "docker_mirror_url" {
  value = module.docker-mirror.mirror_url
}
