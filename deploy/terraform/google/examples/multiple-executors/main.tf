# Two pools of executors (codeintel and batches) sharing one network and one
# registry mirror, built from the submodules.

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

module "networking" {
  source = "../../modules/networking"
}

module "docker-mirror" {
  source = "../../modules/docker-mirror"

  network_id = module.networking.network_id
  subnet_id  = module.networking.subnet_id
  static_ip  = "10.0.1.4"
}

module "executors" {
  for_each = { codeintel = 20, batches = 5 }
  source   = "../../modules/executors"

  network_id                          = module.networking.network_id
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

output "metric_writer_credentials_file" {
  value     = module.credentials.metric_writer_credentials_file
  sensitive = true
}
