# One pool of executors on the codeintel queue, with the registry mirror.

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

module "executors" {
  source = "../.."

  executor_sourcegraph_external_url            = "https://coordinator.example.com"
  executor_sourcegraph_executor_proxy_password = "hunter2hunter2hunter2"
  executor_queue_name                          = "codeintel"
  executor_instance_tag                        = "codeintel"
  executor_metrics_environment_label           = "prod"
  docker_mirror_static_ip                      = "10.0.1.4"
  min_replicas                                 = 0
  max_replicas                                 = 10
  jobs_per_instance_scaling                    = 20
}

module "credentials" {
  source = "../../modules/credentials"

  region          = "us-west-2"
  resource_prefix = ""
}

output "metric_writer_access_key_id" {
  value = module.credentials.metric_writer_access_key_id
}

output "metric_writer_secret_key" {
  value     = module.credentials.metric_writer_secret_key
  sensitive = true
}
