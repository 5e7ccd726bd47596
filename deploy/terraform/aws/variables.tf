# The root module's variables: the guide's module block works with only its
# source changed. A Go test (deploy/terraform/terraform_test.go) checks these
# names.

variable "executor_sourcegraph_external_url" {
  type        = string
  description = "The coordinator's URL, reachable from the executors (EXECUTOR_FRONTEND_URL)."
}

variable "executor_sourcegraph_executor_proxy_password" {
  type        = string
  sensitive   = true
  description = "The coordinator's executors.accessToken (EXECUTOR_FRONTEND_PASSWORD)."
}

variable "executor_queue_name" {
  type        = string
  default     = ""
  description = "The queue the executors process (e.g. codeintel, batches). Exactly one of executor_queue_name and executor_queue_names."
}

variable "executor_queue_names" {
  type        = list(string)
  default     = []
  description = "Several queues the executors process."
}

variable "queue_names" {
  type        = list(string)
  default     = []
  description = "Alias of executor_queue_names."
}

variable "executor_instance_tag" {
  type        = string
  description = "A tag of the executor instances, to tell pools apart (e.g. codeintel)."
}

variable "executor_metrics_environment_label" {
  type        = string
  description = "The environment label of the queue-size metric; the coordinator's EXECUTOR_METRIC_ENVIRONMENT_LABEL."
}

variable "docker_mirror_static_ip" {
  type        = string
  default     = "10.0.1.4"
  description = "The registry mirror's private IP, in the executors' subnet (10.0.1.0/24)."
}

variable "resource_prefix" {
  type        = string
  default     = ""
  description = "Prefixed to every resource's name."
}

variable "min_replicas" {
  type        = number
  default     = 1
  description = "The fewest executor instances."
}

variable "max_replicas" {
  type        = number
  default     = 1
  description = "The most executor instances; auto scaling is on when max_replicas > min_replicas >= 0."
}

variable "jobs_per_instance_scaling" {
  type        = number
  default     = 360
  description = "The autoscaler holds one instance per this many queued jobs."
}

variable "executor_release_url" {
  type        = string
  default     = "https://github.com/execd/execd/releases/latest/download/linux-amd64"
  description = "Where <url>/executor and <url>/execd-sandbox-init are downloaded from."
}

variable "executor_sha256" {
  type    = string
  default = ""
}

variable "executor_maximum_runtime_per_job" {
  type    = string
  default = "30m"
}

variable "executor_maximum_num_jobs" {
  type    = number
  default = 1
}

variable "executor_num_total_jobs" {
  type        = number
  default     = 0
  description = "The executor exits after this many jobs and its machine powers off (0: no limit)."
}

variable "executor_max_active_time" {
  type        = string
  default     = "0"
  description = "The executor exits after this long and its machine powers off (0: no limit)."
}

variable "executor_job_num_cpus" {
  type    = number
  default = 4
}

variable "executor_job_memory" {
  type    = string
  default = "12G"
}

variable "executor_firecracker_disk_space" {
  type    = string
  default = "20G"
}

variable "executor_use_firecracker" {
  type    = bool
  default = true
}

variable "executor_docker_registry_mirror" {
  type        = string
  default     = ""
  description = "Registry mirror URLs; empty: the docker-mirror machine at docker_mirror_static_ip."
}

variable "executor_docker_auth_config" {
  type      = string
  default   = ""
  sensitive = true
}

variable "executor_machine_image" {
  type    = string
  default = ""
}

variable "executor_machine_type" {
  type    = string
  default = ""
}

variable "executor_boot_disk_size" {
  type    = number
  default = 500
}

variable "executor_preemptible_machines" {
  type    = bool
  default = false
}
