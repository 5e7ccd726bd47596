# The executor instances on Google Cloud: an instance template whose
# startup-script is ours, a managed instance group, and, when max_replicas >
# min_replicas, an autoscaler on custom.googleapis.com/executors/queue/size
# holding one instance per jobs_per_instance_scaling jobs. Naming, validation
# and arithmetic are in ../../../modules/scaling (tested with tofu test); the
# script in ../../../modules/startup.

terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "network_id" { type = string }
variable "subnet_id" { type = string }
variable "resource_prefix" {
  type    = string
  default = ""
}
variable "zone" {
  type    = string
  default = "us-central1-c"
}
variable "machine_image" {
  type    = string
  default = "debian-cloud/debian-12"
}
variable "machine_type" {
  type    = string
  default = "n2-standard-4"
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

resource "google_compute_instance_template" "executor" {
  name_prefix  = "${module.scaling.name}-"
  machine_type = var.machine_type
  tags         = ["executor", var.instance_tag]

  labels = {
    executor_tag = var.instance_tag
  }

  disk {
    source_image = var.machine_image
    disk_size_gb = var.boot_disk_size
    disk_type    = "pd-ssd"
    boot         = true
    auto_delete  = true
  }

  network_interface {
    subnetwork = var.subnet_id
  }

  # Firecracker needs KVM: nested virtualization.
  advanced_machine_features {
    enable_nested_virtualization = var.use_firecracker
  }

  scheduling {
    preemptible       = var.preemptible_machines
    automatic_restart = !var.preemptible_machines
  }

  metadata = {
    startup-script = module.startup.executor_script
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_instance_group_manager" "executor" {
  name               = module.scaling.name
  base_instance_name = module.scaling.name
  zone               = var.zone

  version {
    instance_template = google_compute_instance_template.executor.id
  }

  # Without an autoscaler the group holds min_replicas machines.
  target_size = var.max_replicas > var.min_replicas ? null : var.min_replicas
}

resource "google_compute_autoscaler" "executor" {
  count  = var.max_replicas > var.min_replicas ? 1 : 0
  name   = module.scaling.name
  zone   = var.zone
  target = google_compute_instance_group_manager.executor.id

  autoscaling_policy {
    min_replicas    = var.min_replicas
    max_replicas    = var.max_replicas
    cooldown_period = 60

    metric {
      name                       = "custom.googleapis.com/executors/queue/size"
      filter                     = "resource.type = \"global\" AND metric.labels.queueName = \"${module.scaling.metric_queue}\" AND metric.labels.environment = \"${var.metrics_environment_label}\""
      single_instance_assignment = var.jobs_per_instance_scaling
    }
  }
}

output "instance_group_manager" {
  value = google_compute_instance_group_manager.executor.id
}
