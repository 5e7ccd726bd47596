# One pool of executors on the codeintel queue, with the registry mirror.

terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

provider "google" {
  project = "my-project"
  region  = "us-central1"
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

  region          = "us-central1"
  resource_prefix = ""
}

output "metric_writer_credentials_file" {
  value     = module.credentials.metric_writer_credentials_file
  sensitive = true
}
