variables {
  queue_name                = "batches"
  metrics_environment_label = "prod"
  min_replicas              = 0
  max_replicas              = 100
  jobs_per_instance_scaling = 20
}

run "guide_example_400_jobs_20_instances" {
  command = plan
  variables {
    queue_size = 400
  }
  assert {
    condition     = output.desired_instances == 20
    error_message = "400 jobs at 20 per instance must be 20 instances."
  }
  assert {
    condition     = output.autoscaling_enabled
    error_message = "max_replicas > min_replicas must enable auto scaling."
  }
}

run "rounds_up" {
  command = plan
  variables {
    queue_size = 401
  }
  assert {
    condition     = output.desired_instances == 21
    error_message = "401 jobs at 20 per instance must be 21 instances."
  }
}

run "empty_queue_scales_to_zero" {
  command = plan
  variables {
    queue_size = 0
  }
  assert {
    condition     = output.desired_instances == 0
    error_message = "An empty queue with min_replicas = 0 must be 0 instances."
  }
}

run "clamped_to_max" {
  command = plan
  variables {
    queue_size   = 100000
    max_replicas = 7
  }
  assert {
    condition     = output.desired_instances == 7
    error_message = "desired_instances must not exceed max_replicas."
  }
}

run "clamped_to_min" {
  command = plan
  variables {
    queue_size   = 5
    min_replicas = 3
  }
  assert {
    condition     = output.desired_instances == 3
    error_message = "desired_instances must not fall below min_replicas."
  }
}

run "fixed_size_without_autoscaling" {
  command = plan
  variables {
    queue_size   = 400
    min_replicas = 2
    max_replicas = 2
  }
  assert {
    condition     = !output.autoscaling_enabled && output.desired_instances == 2
    error_message = "max_replicas == min_replicas is a fixed group of min_replicas."
  }
}

run "names_and_expression" {
  command = apply
  variables {
    resource_prefix = "ci"
    instance_tag    = "codeintel"
  }
  assert {
    condition     = output.name == "ci-executors-codeintel"
    error_message = "Unexpected name ${output.name}."
  }
  assert {
    condition     = output.aws_scaling_expression == "CEIL(queue / 20) - instances"
    error_message = "Unexpected expression ${output.aws_scaling_expression}."
  }
  assert {
    condition     = output.metric_queue == "batches"
    error_message = "A single queue is its own metric label."
  }
}

run "multiple_queues_sorted_and_joined" {
  command = apply
  variables {
    queue_name  = ""
    queue_names = ["codeintel", "batches"]
  }
  assert {
    condition     = output.metric_queue == "batches_codeintel"
    error_message = "Several queues are labelled by their sorted names joined by '_', got ${output.metric_queue}."
  }
}

run "rejects_negative_min_replicas" {
  command = plan
  variables {
    min_replicas = -1
  }
  expect_failures = [var.min_replicas]
}

run "rejects_zero_jobs_per_instance" {
  command = plan
  variables {
    jobs_per_instance_scaling = 0
  }
  expect_failures = [var.jobs_per_instance_scaling]
}

run "rejects_fractional_max_replicas" {
  command = plan
  variables {
    max_replicas = 2.5
  }
  expect_failures = [var.max_replicas]
}

run "rejects_empty_environment_label" {
  command = plan
  variables {
    metrics_environment_label = ""
  }
  expect_failures = [var.metrics_environment_label]
}

run "rejects_max_below_min" {
  command = plan
  variables {
    min_replicas = 5
    max_replicas = 3
  }
  expect_failures = [terraform_data.inputs]
}

run "rejects_both_queue_settings" {
  command = plan
  variables {
    queue_names = ["codeintel"]
  }
  expect_failures = [terraform_data.inputs]
}

run "rejects_no_queue" {
  command = plan
  variables {
    queue_name = ""
  }
  expect_failures = [terraform_data.inputs]
}
