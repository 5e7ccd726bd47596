variables {
  executor_release_url                = "https://releases.example.com/execd/v1.0.0/linux-amd64/"
  sourcegraph_external_url            = "http://coordinator.example.com:3080"
  sourcegraph_executor_proxy_password = "hunter2hunter2hunter2"
  queues                              = ["batches"]
  docker_registry_mirror              = "http://10.0.1.4:5000"
}

run "single_queue_firecracker" {
  command = plan
  assert {
    condition     = strcontains(output.executor_script, "EXECUTOR_QUEUE_NAME='batches'") && !strcontains(output.executor_script, "EXECUTOR_QUEUE_NAMES")
    error_message = "One queue is written as EXECUTOR_QUEUE_NAME."
  }
  assert {
    condition     = strcontains(output.executor_script, "EXECUTOR_FRONTEND_URL='http://coordinator.example.com:3080'") && strcontains(output.executor_script, "EXECUTOR_FRONTEND_PASSWORD='hunter2hunter2hunter2'")
    error_message = "The coordinator's URL and secret must be in the environment file."
  }
  assert {
    condition     = strcontains(output.executor_script, "EXECUTOR_DOCKER_REGISTRY_MIRROR_URL='http://10.0.1.4:5000'")
    error_message = "The registry mirror must be in the environment file."
  }
  assert {
    condition     = strcontains(output.executor_script, "/usr/local/bin/executor install vm") && !strcontains(output.executor_script, "executor install docker")
    error_message = "use_firecracker runs executor install vm."
  }
  assert {
    condition     = strcontains(output.executor_script, "'https://releases.example.com/execd/v1.0.0/linux-amd64/executor'")
    error_message = "The executor comes from the release URL."
  }
  assert {
    condition     = strcontains(output.executor_script, "Restart=always") && !strcontains(output.executor_script, "poweroff")
    error_message = "Without job or time limits the executor is restarted and the machine stays on."
  }
}

run "several_queues_docker_power_off" {
  command = plan
  variables {
    queues          = ["codeintel", "batches"]
    use_firecracker = false
    num_total_jobs  = 10
  }
  assert {
    condition     = strcontains(output.executor_script, "EXECUTOR_QUEUE_NAMES='codeintel,batches'") && !strcontains(output.executor_script, "EXECUTOR_QUEUE_NAME=")
    error_message = "Several queues are written as EXECUTOR_QUEUE_NAMES."
  }
  assert {
    condition     = strcontains(output.executor_script, "/usr/local/bin/executor install docker") && strcontains(output.executor_script, "EXECUTOR_RUNTIME='docker'")
    error_message = "use_firecracker = false runs jobs in docker."
  }
  assert {
    condition     = strcontains(output.executor_script, "systemctl poweroff") && strcontains(output.executor_script, "Restart=on-failure")
    error_message = "num_total_jobs powers the machine off after a clean exit."
  }
}

run "json_auth_config" {
  command = plan
  variables {
    docker_auth_config = "{\"auths\":{\"r.example.com\":{\"auth\":\"dTpw\"}}}"
  }
  assert {
    condition     = strcontains(output.executor_script, "EXECUTOR_DOCKER_AUTH_CONFIG='{\"auths\":{\"r.example.com\":{\"auth\":\"dTpw\"}}}'")
    error_message = "The auth config JSON is written single-quoted, as is."
  }
}

run "rejects_single_quote" {
  command = plan
  variables {
    docker_auth_config = "it's"
  }
  expect_failures = [output.executor_script]
}

run "rejects_newline" {
  command = plan
  variables {
    job_memory = "12G\nEXECUTOR_FRONTEND_URL=http://evil"
  }
  expect_failures = [output.executor_script]
}

run "mirror_pull_through_cache" {
  command = plan
  assert {
    condition     = strcontains(output.mirror_script, "remoteurl: https://registry-1.docker.io") && strcontains(output.mirror_script, "addr: :5000") && strcontains(output.mirror_script, "-p 5000:5000")
    error_message = "The mirror is a pull-through cache of Docker Hub on :5000."
  }
}

run "rejects_short_password" {
  command = plan
  variables {
    sourcegraph_executor_proxy_password = "short"
  }
  expect_failures = [var.sourcegraph_executor_proxy_password]
}

run "rejects_no_queue" {
  command = plan
  variables {
    queues = []
  }
  expect_failures = [var.queues]
}
