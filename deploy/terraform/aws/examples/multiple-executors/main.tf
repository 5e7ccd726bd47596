# Two pools of executors (codeintel and batches) sharing one network and one
# registry mirror, built from the submodules.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = "us-west-2"
}

module "networking" {
  source = "../../modules/networking"
}

module "docker-mirror" {
  source = "../../modules/docker-mirror"

  vpc_id    = module.networking.vpc_id
  subnet_id = module.networking.subnet_id
  ip_cidr   = module.networking.ip_cidr
  static_ip = "10.0.1.4"
}

module "executors" {
  for_each = { codeintel = 20, batches = 5 }
  source   = "../../modules/executors"

  vpc_id                              = module.networking.vpc_id
  subnet_id                           = module.networking.subnet_id
  resource_prefix                     = each.key
  instance_tag                        = each.key
  sourcegraph_external_url            = "https://coordinator.example.com"
  sourcegraph_executor_proxy_password = "hunter2hunter2hunter2"
  queue_name                          = each.key
  metrics_environment_label           = "prod"
  min_replicas                        = 0
  max_replicas                        = 10
  jobs_per_instance_scaling           = each.value
  executor_release_url                = "https://github.com/execd/execd/releases/latest/download/linux-amd64"
  docker_registry_mirror              = module.docker-mirror.mirror_url
}

module "credentials" {
  source = "../../modules/credentials"
}

output "metric_writer_access_key_id" {
  value = module.credentials.metric_writer_access_key_id
}

output "metric_writer_secret_key" {
  value     = module.credentials.metric_writer_secret_key
  sensitive = true
}
