# The executors' network on Google Cloud: a VPC with one subnet, outbound
# internet through Cloud NAT, and nothing reachable from outside.

terraform {
  required_version = ">= 1.6"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "region" {
  type    = string
  default = "us-central1"
}
variable "resource_prefix" {
  type    = string
  default = ""
}
variable "subnet_cidr" {
  type    = string
  default = "10.0.1.0/24"
}

locals {
  name = "${var.resource_prefix == "" ? "" : "${var.resource_prefix}-"}executors"
}

resource "google_compute_network" "default" {
  name                    = local.name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "default" {
  name          = local.name
  region        = var.region
  network       = google_compute_network.default.id
  ip_cidr_range = var.subnet_cidr
}

resource "google_compute_router" "default" {
  name    = local.name
  region  = var.region
  network = google_compute_network.default.id
}

resource "google_compute_router_nat" "default" {
  name                               = local.name
  router                             = google_compute_router.default.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
}

output "network_id" {
  value = google_compute_network.default.id
}

output "subnet_id" {
  value = google_compute_subnetwork.default.id
}

output "ip_cidr" {
  value = var.subnet_cidr
}
