# Provider-free: renders the start-up scripts of the executor instances and of
# the docker registry mirror, for both clouds. Checked by `tofu test` in CI.

terraform {
  required_version = ">= 1.6"
}

variable "executor_release_url" {
  type        = string
  description = "A URL under which <url>/executor and <url>/execd-sandbox-init are the linux-amd64 binaries of an execd release."

  validation {
    condition     = can(regex("^https?://", var.executor_release_url))
    error_message = "executor_release_url must be an http(s) URL."
  }
}

variable "executor_sha256" {
  type        = string
  default     = ""
  description = "The executor binary's SHA-256; when set, the script refuses a binary that does not match."
}

variable "sourcegraph_external_url" {
  type        = string
  description = "The coordinator's URL, reachable from the instances (EXECUTOR_FRONTEND_URL)."

  validation {
    condition     = can(regex("^https?://", var.sourcegraph_external_url))
    error_message = "sourcegraph_external_url must be an http(s) URL."
  }
}

variable "sourcegraph_executor_proxy_password" {
  type        = string
  sensitive   = true
  description = "The coordinator's executors.accessToken (EXECUTOR_FRONTEND_PASSWORD)."

  validation {
    condition     = length(var.sourcegraph_executor_proxy_password) >= 20
    error_message = "sourcegraph_executor_proxy_password must be at least 20 characters, as the coordinator's executors.accessToken."
  }
}

variable "queues" {
  type        = list(string)
  description = "The queues: one is written as EXECUTOR_QUEUE_NAME, several as EXECUTOR_QUEUE_NAMES."

  validation {
    condition     = length(var.queues) > 0
    error_message = "queues must name at least one queue."
  }
}

variable "maximum_runtime_per_job" {
  type    = string
  default = "30m"
}

variable "maximum_num_jobs" {
  type    = number
  default = 1
}

variable "num_total_jobs" {
  type        = number
  default     = 0
  description = "The executor exits after this many jobs and the machine powers off (0: no limit)."
}

variable "max_active_time" {
  type        = string
  default     = "0"
  description = "The executor exits after this long and the machine powers off (0: no limit)."
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
  type        = bool
  default     = true
  description = "Jobs run in micro-VMs (executor install vm); false: in docker containers (executor install docker)."
}

variable "docker_registry_mirror" {
  type        = string
  default     = ""
  description = "Registry mirror URLs, comma-separated (EXECUTOR_DOCKER_REGISTRY_MIRROR_URL)."
}

variable "docker_auth_config" {
  type        = string
  default     = ""
  sensitive   = true
  description = "A docker config JSON for private registries (EXECUTOR_DOCKER_AUTH_CONFIG)."
}

variable "additional_environment" {
  type        = map(string)
  default     = {}
  description = "More EXECUTOR_* variables of the executor's environment file."
}

variable "mirror_port" {
  type    = number
  default = 5000
}

variable "mirror_metrics_port" {
  type    = number
  default = 9999
}

variable "mirror_data_dir" {
  type    = string
  default = "/mnt/registry"
}

variable "registry_version" {
  type        = string
  default     = "2.8.3"
  description = "The distribution registry image tag (registry:<version>) the mirror runs."
}

locals {
  env = merge({
    EXECUTOR_FRONTEND_URL               = var.sourcegraph_external_url
    EXECUTOR_FRONTEND_PASSWORD          = var.sourcegraph_executor_proxy_password
    EXECUTOR_MAXIMUM_RUNTIME_PER_JOB    = var.maximum_runtime_per_job
    EXECUTOR_MAXIMUM_NUM_JOBS           = tostring(var.maximum_num_jobs)
    EXECUTOR_NUM_TOTAL_JOBS             = tostring(var.num_total_jobs)
    EXECUTOR_MAX_ACTIVE_TIME            = var.max_active_time
    EXECUTOR_JOB_NUM_CPUS               = tostring(var.job_num_cpus)
    EXECUTOR_JOB_MEMORY                 = var.job_memory
    EXECUTOR_FIRECRACKER_DISK_SPACE     = var.firecracker_disk_space
    EXECUTOR_USE_FIRECRACKER            = tostring(var.use_firecracker)
    EXECUTOR_RUNTIME                    = var.use_firecracker ? "firecracker" : "docker"
    EXECUTOR_DOCKER_REGISTRY_MIRROR_URL = var.docker_registry_mirror
    EXECUTOR_DOCKER_AUTH_CONFIG         = var.docker_auth_config
    EXECUTOR_WORKSPACE_ROOT             = "/var/lib/execd/workspaces"
    EXECUTOR_METRICS_ADDR               = "127.0.0.1:6060"
    },
    length(var.queues) == 1 ? { EXECUTOR_QUEUE_NAME = var.queues[0] } : { EXECUTOR_QUEUE_NAMES = join(",", var.queues) },
    var.additional_environment,
  )

  # Lines that both systemd's EnvironmentFile and the shell read alike:
  # single-quoted values, which therefore may hold no single quote or newline
  # (checked below).
  env_file = join("\n", [for k in sort(keys(local.env)) : "${k}='${local.env[k]}'" if local.env[k] != ""])
  # Only the names, which are not secret.
  env_bad = nonsensitive([for k in sort(keys(local.env)) : k if strcontains(local.env[k], "'") || strcontains(local.env[k], "\n")])

  power_off = var.num_total_jobs > 0 || var.max_active_time != "0"
}

output "executor_script" {
  sensitive = true
  precondition {
    condition     = length(local.env_bad) == 0
    error_message = "These values hold a single quote or a newline, which the executor's environment file cannot carry: ${join(", ", local.env_bad)}."
  }
  description = "The executor instances' start-up script (user data / startup-script)."
  value = templatefile("${path.module}/executor.sh.tftpl", {
    release_url     = trimsuffix(var.executor_release_url, "/")
    executor_sha256 = var.executor_sha256
    env_file        = local.env_file
    use_firecracker = var.use_firecracker
    power_off       = local.power_off
  })
}

output "mirror_script" {
  description = "The docker registry mirror's start-up script: the distribution registry as a pull-through cache of Docker Hub."
  value = templatefile("${path.module}/docker-mirror.sh.tftpl", {
    port             = var.mirror_port
    metrics_port     = var.mirror_metrics_port
    data_dir         = var.mirror_data_dir
    registry_version = var.registry_version
  })
}

output "environment" {
  sensitive   = true
  description = "The executor's environment, as written to /etc/execd/executor.env."
  value       = local.env
}
