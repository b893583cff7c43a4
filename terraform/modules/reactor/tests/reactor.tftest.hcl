# Wiring of the reactor module, planned and applied against a mocked AWS provider.
# Run: terraform init -backend=false && terraform test (scripts/check-terraform does it).

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-west-2" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_resource "aws_sqs_queue" {
    defaults = {
      arn = "arn:aws:sqs:us-west-2:123456789012:reactor-dlq"
      id  = "https://sqs.us-west-2.amazonaws.com/123456789012/reactor-dlq"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = { arn = "arn:aws:lambda:us-west-2:123456789012:function:reactor" }
  }
  mock_resource "aws_cloudwatch_event_rule" {
    defaults = { arn = "arn:aws:events:us-west-2:123456789012:rule/reactor-mock" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/reactor" }
  }
}

variables {
  name            = "reactor"
  lambda_zip_path = "tests/fixtures/reactor.zip"
  # "my-asg" is the group of the samples in /work/shared/AWS.md (tests/events/).
  pools = {
    "my-asg"  = [{ name = "web", port = 8080 }]
    "api-asg" = [{ name = "api", port = 9000 }, { name = "api-admin", port = 9001 }]
  }
  proxy_group_name = "proxy-asg"
  proxy_tag_key    = "haproxy-asg:fleet"
  proxy_tag_value  = "edge"
}

run "defaults" {
  command = apply

  # --- Lambda ---------------------------------------------------------------
  assert {
    condition     = aws_lambda_function.this.runtime == "provided.al2023" && aws_lambda_function.this.handler == "bootstrap"
    error_message = "The reactor must run on provided.al2023 with handler bootstrap."
  }
  assert {
    condition     = aws_lambda_function.this.architectures == tolist(["x86_64"])
    error_message = "The default architecture must be x86_64."
  }
  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == 10
    error_message = "Reserved concurrency must come from the variable."
  }
  assert {
    condition     = aws_lambda_function.this.dead_letter_config[0].target_arn == aws_sqs_queue.dlq.arn
    error_message = "Failed asynchronous invocations must go to the dead-letter queue."
  }
  assert {
    condition     = aws_sqs_queue.dlq.sqs_managed_sse_enabled == true
    error_message = "The dead-letter queue must be encrypted."
  }
  assert {
    condition     = aws_lambda_function_event_invoke_config.this.maximum_retry_attempts == 2
    error_message = "Async retries must be configured."
  }
  assert {
    condition     = aws_cloudwatch_log_group.this.name == "/aws/lambda/reactor" && aws_cloudwatch_log_group.this.retention_in_days == 365
    error_message = "The log group must be the function's, with the retention variable."
  }

  # --- Environment (docs/interfaces.md) ---------------------------------------
  assert {
    condition = jsondecode(aws_lambda_function.this.environment[0].variables["POOLS"]) == {
      "my-asg"  = [{ name = "web", port = 8080 }]
      "api-asg" = [{ name = "api", port = 9000 }, { name = "api-admin", port = 9001 }]
    }
    error_message = "POOLS must be the JSON of var.pools."
  }
  assert {
    condition = (
      aws_lambda_function.this.environment[0].variables["PROXY_TAG_KEY"] == "haproxy-asg:fleet" &&
      aws_lambda_function.this.environment[0].variables["PROXY_TAG_VALUE"] == "edge" &&
      aws_lambda_function.this.environment[0].variables["PROXY_GROUP"] == "proxy-asg" &&
      aws_lambda_function.this.environment[0].variables["SSM_DOCUMENT"] == "reactor-agent" &&
      aws_lambda_function.this.environment[0].variables["HEALTH_TIMEOUT_S"] == "60" &&
      aws_lambda_function.this.environment[0].variables["DRAIN_TIMEOUT_S"] == "120"
    )
    error_message = "The environment must carry the proxy tag, group, document and timeouts."
  }
  assert {
    condition     = aws_lambda_function.this.environment[0].variables["LIFECYCLE_HOOKS"] == "reactor-launch,reactor-terminate"
    error_message = "LIFECYCLE_HOOKS must name exactly the hooks the module creates, so the reactor never completes another system's hook."
  }
  assert {
    condition = toset(split(",", aws_lambda_function.this.environment[0].variables["LIFECYCLE_HOOKS"])) == toset(
      [for h in aws_autoscaling_lifecycle_hook.this : h.name]
    )
    error_message = "LIFECYCLE_HOOKS must match the lifecycle hooks created."
  }
  assert {
    condition     = !contains(keys(aws_lambda_function.this.environment[0].variables), "DNS_ZONE_ID")
    error_message = "Without var.dns there must be no DNS variables."
  }

  # --- Lifecycle hooks: both transitions on every backend group ---------------
  assert {
    condition = toset([for hook in aws_autoscaling_lifecycle_hook.this : "${hook.autoscaling_group_name} ${hook.lifecycle_transition}"]) == toset([
      "my-asg autoscaling:EC2_INSTANCE_LAUNCHING",
      "my-asg autoscaling:EC2_INSTANCE_TERMINATING",
      "api-asg autoscaling:EC2_INSTANCE_LAUNCHING",
      "api-asg autoscaling:EC2_INSTANCE_TERMINATING",
    ])
    error_message = "Each backend group needs a launch and a terminate hook, and the proxy group none."
  }
  assert {
    condition     = alltrue([for hook in aws_autoscaling_lifecycle_hook.this : hook.heartbeat_timeout == 300 && hook.default_result == "ABANDON"])
    error_message = "Hooks must take heartbeat timeout and default result from the variables."
  }

  # --- EventBridge patterns ------------------------------------------------------
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.this["lifecycle"].event_pattern).source == ["aws.autoscaling"]
    error_message = "The lifecycle rule must match source aws.autoscaling."
  }
  assert {
    condition     = toset(jsondecode(aws_cloudwatch_event_rule.this["lifecycle"].event_pattern)["detail-type"]) == toset(["EC2 Instance-launch Lifecycle Action", "EC2 Instance-terminate Lifecycle Action"])
    error_message = "The lifecycle rule must match both lifecycle action detail-types."
  }
  assert {
    condition     = toset(jsondecode(aws_cloudwatch_event_rule.this["lifecycle"].event_pattern).detail.AutoScalingGroupName) == toset(["my-asg", "api-asg"])
    error_message = "The lifecycle rule must be filtered on the backend groups only."
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.this["results"].event_pattern).source == ["aws.autoscaling"]
    error_message = "The results rule must match source aws.autoscaling."
  }
  assert {
    condition = toset(jsondecode(aws_cloudwatch_event_rule.this["results"].event_pattern)["detail-type"]) == toset([
      "EC2 Instance Launch Successful", "EC2 Instance Launch Unsuccessful",
      "EC2 Instance Terminate Successful", "EC2 Instance Terminate Unsuccessful",
    ])
    error_message = "The results rule must match launch/terminate successful/unsuccessful."
  }
  assert {
    condition     = toset(jsondecode(aws_cloudwatch_event_rule.this["results"].event_pattern).detail.AutoScalingGroupName) == toset(["my-asg", "api-asg", "proxy-asg"])
    error_message = "The results rule must be filtered on the backend groups and the proxy group."
  }
  assert {
    condition     = aws_cloudwatch_event_rule.this["reconcile"].schedule_expression == "rate(5 minutes)"
    error_message = "The reconcile schedule must come from the variable."
  }
  assert {
    condition     = alltrue([for target in aws_cloudwatch_event_target.this : target.arn == aws_lambda_function.this.arn && target.dead_letter_config[0].arn == aws_sqs_queue.dlq.arn])
    error_message = "Every rule must target the reactor, with the dead-letter queue for undeliverable events."
  }
  assert {
    condition     = alltrue([for key, permission in aws_lambda_permission.events : permission.principal == "events.amazonaws.com" && permission.source_arn == aws_cloudwatch_event_rule.this[key].arn])
    error_message = "Every rule needs its own invoke permission, scoped to its ARN."
  }

  # --- IAM: least privilege ------------------------------------------------------
  assert {
    condition = { for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Sid => s.Resource }["LifecycleActions"] == [
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/api-asg",
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/my-asg",
    ]
    error_message = "Lifecycle actions must be allowed on the managed groups' ARNs only."
  }
  assert {
    condition     = toset({ for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Sid => s.Action }["LifecycleActions"]) == toset(["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"])
    error_message = "Only CompleteLifecycleAction and RecordLifecycleActionHeartbeat may be scoped to the groups."
  }
  assert {
    condition     = { for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Sid => s.Resource }["SendCommandDocument"] == ["arn:aws:ssm:us-west-2:123456789012:document/reactor-agent"]
    error_message = "ssm:SendCommand must be allowed with the project's document only."
  }
  assert {
    condition = (
      { for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Sid => s.Resource }["SendCommandProxies"] == ["arn:aws:ec2:us-west-2:123456789012:instance/*"] &&
      [for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Condition if s.Sid == "SendCommandProxies"][0] == { StringEquals = { "ssm:resourceTag/haproxy-asg:fleet" = ["edge"] } }
    )
    error_message = "ssm:SendCommand on instances must be conditioned on the proxy tag."
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement :
      s.Resource != ["*"] || contains(["Discovery", "CommandResults"], s.Sid)
    ])
    error_message = "Only read-only discovery and command results may use Resource *."
  }
  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Action if s.Resource == ["*"]
    ])) == toset(["autoscaling:Describe*", "ec2:DescribeInstances", "ssm:GetCommandInvocation", "ssm:ListCommandInvocations"])
    error_message = "The unscoped actions must be exactly the read-only ones."
  }
  assert {
    condition     = alltrue([for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Effect == "Allow" && !contains(s.Action, "*") && !anytrue([for a in s.Action : endswith(a, ":*")])])
    error_message = "No statement may allow every action of a service."
  }
  assert {
    condition     = !contains([for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Sid], "DnsRecords")
    error_message = "Without var.dns there must be no Route 53 access."
  }

  # --- SSM document: typed, restricted parameters ---------------------------------
  assert {
    condition     = jsondecode(aws_ssm_document.agent.content).schemaVersion == "2.2" && aws_ssm_document.agent.document_type == "Command"
    error_message = "The SSM document must be a schema 2.2 Command document."
  }
  assert {
    condition     = keys(jsondecode(aws_ssm_document.agent.content).parameters) == ["Action", "Change"]
    error_message = "The document must have exactly the parameters Action and Change."
  }
  assert {
    condition = (
      jsondecode(aws_ssm_document.agent.content).parameters.Change.type == "String" &&
      jsondecode(aws_ssm_document.agent.content).parameters.Change.allowedPattern == "^[A-Za-z0-9+/]{4,}={0,2}$"
    )
    error_message = "Change must be a String restricted to base64."
  }
  assert {
    condition = (
      jsondecode(aws_ssm_document.agent.content).parameters.Action.type == "String" &&
      jsondecode(aws_ssm_document.agent.content).parameters.Action.allowedValues == ["apply", "sync"]
    )
    error_message = "Action must be a String restricted to apply|sync."
  }
  assert {
    condition     = can(regex(jsondecode(aws_ssm_document.agent.content).parameters.Change.allowedPattern, jsondecode(aws_ssm_document.agent.content).parameters.Change.default))
    error_message = "The default Change must satisfy its own pattern."
  }
  assert {
    condition     = contains(jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.runCommand, "  apply) printf '%s' '{{ Change }}' | base64 -d | /usr/local/bin/agent apply --json --file - ;;")
    error_message = "The apply command must be the one of docs/interfaces.md."
  }
  assert {
    condition     = contains(jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.runCommand, "  sync) /usr/local/bin/agent sync --json ;;")
    error_message = "The sync command must be the one of docs/interfaces.md."
  }
  assert {
    condition = alltrue([
      for line in jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.runCommand :
      alltrue([for p in regexall("\\{\\{ *([A-Za-z]+) *\\}\\}", line) : contains(["Action", "Change"], p[0])])
    ])
    error_message = "The script may only use the restricted parameters."
  }
}

# The event samples of /work/shared/AWS.md (tests/events/) against the planned patterns.
run "lifecycle_samples_match" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["lifecycle"]
    event   = file("tests/events/terminate-lifecycle-action.json")
  }
  assert {
    condition     = output.matches
    error_message = "The terminate lifecycle sample must match the lifecycle rule."
  }
}

run "launch_lifecycle_sample_matches" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["lifecycle"]
    event   = file("tests/events/launch-lifecycle-action.json")
  }
  assert {
    condition     = output.matches
    error_message = "The launch lifecycle sample must match the lifecycle rule."
  }
}

run "result_sample_not_lifecycle" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["lifecycle"]
    event   = file("tests/events/launch-successful.json")
  }
  assert {
    condition     = !output.matches
    error_message = "A launch result must not match the lifecycle rule."
  }
}

run "result_samples_match" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["results"]
    event   = file("tests/events/launch-successful.json")
  }
  assert {
    condition     = output.matches
    error_message = "A backend group's Launch Successful must match the results rule."
  }
}

run "proxy_result_sample_matches" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["results"]
    event   = file("tests/events/terminate-unsuccessful-proxy.json")
  }
  assert {
    condition     = output.matches
    error_message = "The proxy group's Terminate Unsuccessful must match the results rule."
  }
}

run "unmanaged_group_ignored" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["results"]
    event   = file("tests/events/launch-successful-unmanaged.json")
  }
  assert {
    condition     = !output.matches
    error_message = "Another group's events must not reach the reactor."
  }
}

run "arm64_with_dns" {
  command = plan

  variables {
    architecture = "arm64"
    tracing_mode = "Active"
    dns = {
      zone_id     = "Z0123456789ABCDEFGHIJ"
      record_name = "Proxies.Example.com."
      ttl         = 30
    }
  }

  assert {
    condition     = aws_lambda_function.this.architectures == tolist(["arm64"])
    error_message = "architecture = arm64 must reach the function."
  }
  assert {
    condition = (
      aws_lambda_function.this.environment[0].variables["DNS_ZONE_ID"] == "Z0123456789ABCDEFGHIJ" &&
      aws_lambda_function.this.environment[0].variables["DNS_RECORD_NAME"] == "Proxies.Example.com." &&
      aws_lambda_function.this.environment[0].variables["DNS_TTL"] == "30"
    )
    error_message = "var.dns must reach DNS_ZONE_ID, DNS_RECORD_NAME and DNS_TTL."
  }
  assert {
    condition     = { for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Sid => s.Resource }["DnsRecords"] == ["arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"]
    error_message = "route53:ChangeResourceRecordSets must be allowed on the zone only."
  }
  assert {
    condition     = [for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Condition if s.Sid == "DnsRecords"][0]["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsNormalizedRecordNames"] == ["proxies.example.com"]
    error_message = "Record changes must be limited to the proxies' record name."
  }
  assert {
    condition     = { for s in jsondecode(aws_iam_role_policy.this.policy).Statement : s.Sid => s.Action }["Tracing"] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    error_message = "Active tracing needs the X-Ray write permission."
  }
}

run "heartbeat_timeout_validated" {
  command = plan
  variables {
    heartbeat_timeout = 20
  }
  expect_failures = [var.heartbeat_timeout]
}

run "heartbeat_timeout_upper_bound" {
  command = plan
  variables {
    heartbeat_timeout = 7201
  }
  expect_failures = [var.heartbeat_timeout]
}

run "default_result_validated" {
  command = plan
  variables {
    default_result = "RETRY"
  }
  expect_failures = [var.default_result]
}

run "architecture_validated" {
  command = plan
  variables {
    architecture = "i386"
  }
  expect_failures = [var.architecture]
}

run "timeout_must_cover_waits" {
  command = plan
  variables {
    timeout         = 100
    drain_timeout_s = 120
  }
  expect_failures = [aws_lambda_function.this]
}
