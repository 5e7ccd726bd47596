# The docker registry mirror on Google Cloud: one machine at a static
# internal IP running the distribution registry as a pull-through cache of
# Docker Hub on :5000 (metrics on :9999), reachable from the executors only.

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
variable "static_ip" {
  type    = string
  default = "10.0.1.4"
}
variable "zone" {
  type    = string
  default = "us-central1-c"
}
variable "region" {
  type    = string
  default = "us-central1"
}
variable "resource_prefix" {
  type    = string
  default = ""
}
variable "machine_image" {
  type    = string
  default = "debian-cloud/debian-12"
}
variable "machine_type" {
  type    = string
  default = "n2-standard-2"
}
variable "boot_disk_size" {
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

resource "google_compute_address" "mirror" {
  name         = local.name
  region       = var.region
  subnetwork   = var.subnet_id
  address_type = "INTERNAL"
  address      = var.static_ip
}

resource "google_compute_instance" "mirror" {
  name         = local.name
  zone         = var.zone
  machine_type = var.machine_type
  tags         = ["docker-registry-mirror"]

  boot_disk {
    initialize_params {
      image = var.machine_image
      size  = var.boot_disk_size
      type  = "pd-ssd"
    }
  }

  network_interface {
    subnetwork = var.subnet_id
    network_ip = google_compute_address.mirror.address
  }

  metadata = {
    startup-script = module.startup.mirror_script
  }
}

resource "google_compute_firewall" "mirror" {
  name        = local.name
  network     = var.network_id
  source_tags = ["executor"]
  target_tags = ["docker-registry-mirror"]

  allow {
    protocol = "tcp"
    ports    = ["5000", "9999"]
  }
}

output "mirror_url" {
  value = "http://${var.static_ip}:5000"
}
