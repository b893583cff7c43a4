# Wiring of the reactor module, planned and applied against a mocked AWS provider.
# Run: terraform init -backend=false && terraform test (scripts/check-terraform does it).
#
# IAM policies are data "aws_iam_policy_document" (the mock gives their `json` no
# meaning), so the statements are checked on the data sources' arguments.

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
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
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
  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = { arn = "arn:aws:cloudwatch:us-west-2:123456789012:alarm:reactor-mock" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:us-west-2:123456789012:table/reactor-ledger" }
  }
}

# The two queues told apart (the mock gives every aws_sqs_queue the dead-letter queue's
# ARN and URL otherwise).
override_resource {
  target = aws_sqs_queue.inbox
  values = {
    arn = "arn:aws:sqs:us-west-2:123456789012:reactor-inbox"
    id  = "https://sqs.us-west-2.amazonaws.com/123456789012/reactor-inbox"
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
  proxy_role_arn   = "arn:aws:iam::123456789012:role/proxy-20260101000000000000000001"
  proxy_role_id    = "AROA1234567890EXAMPLE"
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
    condition     = aws_lambda_function.this.timeout == 60
    error_message = "No invocation waits for the hosts: the default Lambda timeout must be 60 s."
  }
  assert {
    condition     = aws_lambda_function.this.reserved_concurrent_executions == 10
    error_message = "Reserved concurrency must come from the variable."
  }
  assert {
    condition     = length(aws_lambda_function.this.dead_letter_config) == 0
    error_message = "Nothing invokes the function asynchronously any more: no dead-letter config on it (the inbox redrives to the dead-letter queue)."
  }
  assert {
    condition     = aws_sqs_queue.dlq.sqs_managed_sse_enabled == true && aws_sqs_queue.dlq.name == "reactor-dlq" && aws_sqs_queue.dlq.message_retention_seconds == 1209600
    error_message = "The dead-letter queue must be encrypted and keep its messages 14 days."
  }
  assert {
    condition     = alltrue([for target in aws_cloudwatch_event_target.this : target.retry_policy[0].maximum_event_age_in_seconds == 240 && target.retry_policy[0].maximum_retry_attempts == 185])
    error_message = "Events older than the default maximum age (240 s, below the 300 s heartbeat timeout) must go to the dead-letter queue."
  }

  # --- Inbox (SQS) and the event source mapping ------------------------------------
  assert {
    condition = (
      aws_sqs_queue.inbox.name == "reactor-inbox" &&
      aws_sqs_queue.inbox.fifo_queue != true &&
      aws_sqs_queue.inbox.sqs_managed_sse_enabled == true && aws_sqs_queue.inbox.kms_master_key_id == null
    )
    error_message = "The inbox must be a standard queue <name>-inbox, encrypted (SSE-SQS without kms_key_arn)."
  }
  assert {
    condition     = aws_sqs_queue.inbox.visibility_timeout_seconds == 360
    error_message = "The inbox's visibility timeout must be 6 x the Lambda timeout (60 s) + the batching window (0)."
  }
  assert {
    condition     = aws_sqs_queue.inbox.visibility_timeout_seconds >= 6 * aws_lambda_function.this.timeout
    error_message = "AWS: the source queue's visibility timeout must be at least six times the function's timeout."
  }
  assert {
    condition     = jsondecode(aws_sqs_queue.inbox.redrive_policy) == { deadLetterTargetArn = aws_sqs_queue.dlq.arn, maxReceiveCount = 5 }
    error_message = "The inbox must redrive to the dead-letter queue after 5 receives."
  }
  assert {
    condition     = aws_sqs_queue.inbox.message_retention_seconds < aws_sqs_queue.dlq.message_retention_seconds
    error_message = "The dead-letter queue must keep messages longer than the inbox (a redriven message keeps its age)."
  }
  assert {
    condition = (
      aws_lambda_event_source_mapping.inbox.event_source_arn == aws_sqs_queue.inbox.arn &&
      aws_lambda_event_source_mapping.inbox.function_name == aws_lambda_function.this.arn &&
      aws_lambda_event_source_mapping.inbox.batch_size == 10 &&
      aws_lambda_event_source_mapping.inbox.maximum_batching_window_in_seconds == 0 &&
      aws_lambda_event_source_mapping.inbox.function_response_types == toset(["ReportBatchItemFailures"]) &&
      aws_lambda_event_source_mapping.inbox.scaling_config[0].maximum_concurrency == 5
    )
    error_message = "The inbox must feed the reactor: batches of 10, no window, partial batch failures reported, at most 5 concurrent invocations."
  }
  assert {
    condition     = output.inbox_queue_url == aws_sqs_queue.inbox.id && output.inbox_queue_arn == "arn:aws:sqs:us-west-2:123456789012:reactor-inbox"
    error_message = "The outputs must give the inbox's URL and ARN (for the proxy-fleet module)."
  }

  # --- Inbox queue policy: the module's rules and the proxy role, TLS only -----------
  assert {
    condition     = aws_sqs_queue_policy.inbox.queue_url == aws_sqs_queue.inbox.id && aws_sqs_queue_policy.inbox.policy == data.aws_iam_policy_document.inbox.json
    error_message = "The inbox's policy must be the aws_iam_policy_document."
  }
  assert {
    condition     = toset([for st in data.aws_iam_policy_document.inbox.statement : st.sid]) == toset(["EventBridgeRules", "ProxyReports", "DenyInsecureTransport"])
    error_message = "The inbox's policy must hold exactly the rules', the proxies' and the TLS statements."
  }
  assert {
    condition = one([
      for st in data.aws_iam_policy_document.inbox.statement : st
      if st.sid == "EventBridgeRules" && st.effect == "Allow" && st.actions == toset(["sqs:SendMessage"]) && st.resources == toset(["arn:aws:sqs:us-west-2:123456789012:reactor-inbox"]) &&
      [for pr in st.principals : "${pr.type} ${join(",", pr.identifiers)}"] == ["Service events.amazonaws.com"] &&
      [for c in st.condition : "${c.test} ${c.variable}"] == ["ArnEquals aws:SourceArn"] &&
      [for c in st.condition : toset(c.values)] == [toset([for rule in aws_cloudwatch_event_rule.this : rule.arn])]
    ]) != null
    error_message = "EventBridge may send to the inbox only from the module's rules (aws:SourceArn)."
  }
  assert {
    condition = one([
      for st in data.aws_iam_policy_document.inbox.statement : st
      if st.sid == "ProxyReports" && st.effect == "Allow" && st.actions == toset(["sqs:SendMessage"]) && st.resources == toset(["arn:aws:sqs:us-west-2:123456789012:reactor-inbox"]) &&
      [for pr in st.principals : "${pr.type} ${join(",", pr.identifiers)}"] == ["AWS arn:aws:iam::123456789012:role/proxy-20260101000000000000000001"]
    ]) != null
    error_message = "The proxy role (its sessions) may send its reports to the inbox: sqs:SendMessage only."
  }
  assert {
    condition = one([
      for st in data.aws_iam_policy_document.inbox.statement : st
      if st.sid == "DenyInsecureTransport" && st.effect == "Deny" && st.actions == toset(["sqs:*"]) &&
      [for c in st.condition : "${c.test} ${c.variable}=${join(",", c.values)}"] == ["Bool aws:SecureTransport=false"]
    ]) != null
    error_message = "The inbox must refuse every request without TLS."
  }
  assert {
    condition     = alltrue([for st in data.aws_iam_policy_document.inbox.statement : st.effect == "Deny" || st.actions == toset(["sqs:SendMessage"])])
    error_message = "The inbox's policy may allow nothing but sqs:SendMessage."
  }

  # --- Ledger (DynamoDB) ------------------------------------------------------------
  assert {
    condition = (
      aws_dynamodb_table.ledger.name == "reactor-ledger" &&
      aws_dynamodb_table.ledger.billing_mode == "PAY_PER_REQUEST" &&
      aws_dynamodb_table.ledger.hash_key == "id" && aws_dynamodb_table.ledger.range_key == null
    )
    error_message = "The ledger must be <name>-ledger, on demand, with the hash key id only."
  }
  assert {
    condition     = toset([for a in aws_dynamodb_table.ledger.attribute : "${a.name}:${a.type}"]) == toset(["id:S", "open:S"])
    error_message = "The ledger declares the attributes id and open (strings), the keys of the table and its index."
  }
  assert {
    condition = [
      for g in aws_dynamodb_table.ledger.global_secondary_index : "${g.name} ${g.hash_key} ${coalesce(g.range_key, "-")} ${g.projection_type}"
    ] == ["open open - ALL"]
    error_message = "The ledger needs exactly one global secondary index: open (hash key open, projection ALL), sparse over the undecided items."
  }
  assert {
    condition     = aws_dynamodb_table.ledger.ttl[0].attribute_name == "expires_at" && aws_dynamodb_table.ledger.ttl[0].enabled
    error_message = "Decided items must expire through TTL on expires_at."
  }
  assert {
    condition     = aws_dynamodb_table.ledger.point_in_time_recovery[0].enabled
    error_message = "The ledger needs point-in-time recovery."
  }
  assert {
    # Without kms_key_arn the key is DynamoDB's AWS managed one (computed).
    condition     = aws_dynamodb_table.ledger.server_side_encryption[0].enabled
    error_message = "The ledger must be encrypted (DynamoDB's AWS managed key without kms_key_arn)."
  }
  assert {
    condition     = output.ledger_table_name == "reactor-ledger" && output.ledger_table_arn == "arn:aws:dynamodb:us-west-2:123456789012:table/reactor-ledger"
    error_message = "The outputs must name the ledger table and give its ARN."
  }
  assert {
    condition     = aws_cloudwatch_log_group.this.name == "/aws/lambda/reactor" && aws_cloudwatch_log_group.this.retention_in_days == 365
    error_message = "The log group must be the function's, with the retention variable."
  }

  # --- Environment (docs/interfaces.md) ---------------------------------------
  assert {
    condition = jsondecode(aws_lambda_function.this.environment[0].variables["POOLS"]) == {
      "my-asg"  = [{ name = "web", port = 8080, ports = [] }]
      "api-asg" = [{ name = "api", port = 9000, ports = [] }, { name = "api-admin", port = 9001, ports = [] }]
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
    condition = (
      aws_lambda_function.this.environment[0].variables["LEDGER_TABLE"] == "reactor-ledger" &&
      aws_lambda_function.this.environment[0].variables["LEDGER_TTL_S"] == "86400" &&
      aws_lambda_function.this.environment[0].variables["PROXY_ROLE_ID"] == "AROA1234567890EXAMPLE" &&
      aws_lambda_function.this.environment[0].variables["HOST_REPORT_TIMEOUT_S"] == "30" &&
      aws_lambda_function.this.environment[0].variables["INBOX_QUEUE_URL"] == aws_sqs_queue.inbox.id
    )
    error_message = "The environment must carry the ledger table, its TTL, the proxy role's unique id and the host report timeout (docs/interfaces.md)."
  }
  assert {
    condition = toset(keys(aws_lambda_function.this.environment[0].variables)) == toset([
      "POOLS", "PROXY_TAG_KEY", "PROXY_TAG_VALUE", "PROXY_GROUP", "SSM_DOCUMENT", "HEALTH_TIMEOUT_S",
      "DRAIN_TIMEOUT_S", "LIFECYCLE_HOOKS", "MANAGED_GROUPS", "REBALANCE", "SPOT_DRAIN_TIMEOUT_S",
      "LEDGER_TABLE", "LEDGER_TTL_S", "PROXY_ROLE_ID", "HOST_REPORT_TIMEOUT_S", "INBOX_QUEUE_URL",
      "MEMBER_ZONES", "PROXY_HEALTH_GROUPS", "UNHEALTHY_AFTER_S", "UNHEALTHY_QUORUM", "MAX_UNHEALTHY_FRACTION",
    ])
    error_message = "Without dns the environment must hold exactly the variables of the contract."
  }
  assert {
    condition = (
      aws_lambda_function.this.environment[0].variables["MEMBER_ZONES"] == "false" &&
      aws_lambda_function.this.environment[0].variables["PROXY_HEALTH_GROUPS"] == "" &&
      aws_lambda_function.this.environment[0].variables["UNHEALTHY_AFTER_S"] == "30" &&
      aws_lambda_function.this.environment[0].variables["UNHEALTHY_QUORUM"] == "0" &&
      aws_lambda_function.this.environment[0].variables["MAX_UNHEALTHY_FRACTION"] == "0.25"
    )
    error_message = "By default no zones in the changes and no group opted in to proxy-detected health: MEMBER_ZONES false, PROXY_HEALTH_GROUPS empty, UNHEALTHY_AFTER_S 30, UNHEALTHY_QUORUM 0 (a majority), MAX_UNHEALTHY_FRACTION 0.25."
  }
  assert {
    condition     = alltrue(flatten([for group, pools in jsondecode(aws_lambda_function.this.environment[0].variables["POOLS"]) : [for pool in pools : !contains(keys(pool), "weight")]]))
    error_message = "POOLS must carry no weight key for an entry without a weight (absent, not null)."
  }
  assert {
    condition     = alltrue(flatten([for group, pools in output.group_pools : [for pool in pools : pool.weight == null]]))
    error_message = "group_pools must give a null weight where pools sets none."
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
    condition     = aws_lambda_function.this.environment[0].variables["MANAGED_GROUPS"] == ""
    error_message = "Without var.managed_groups, MANAGED_GROUPS must be empty: POOLS alone says which groups feed which pools."
  }
  assert {
    condition = (
      aws_lambda_function.this.environment[0].variables["REBALANCE"] == "ignore" &&
      aws_lambda_function.this.environment[0].variables["SPOT_DRAIN_TIMEOUT_S"] == "90"
    )
    error_message = "REBALANCE must default to ignore and SPOT_DRAIN_TIMEOUT_S to 90."
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
    condition     = alltrue([for hook in aws_autoscaling_lifecycle_hook.this : hook.heartbeat_timeout == 720 && hook.default_result == "ABANDON"])
    error_message = "Hooks must take heartbeat timeout and default result from the variables."
  }

  # --- EventBridge patterns ------------------------------------------------------
  assert {
    condition     = toset(keys(aws_cloudwatch_event_rule.this)) == toset(["lifecycle", "results", "spot", "reconcile"])
    error_message = "The reactor needs the lifecycle, results, spot and reconcile rules (the commands rule is gone: hosts report through the inbox)."
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.this["lifecycle"].event_pattern).source == ["aws.autoscaling"]
    error_message = "The lifecycle rule must match source aws.autoscaling."
  }
  assert {
    condition     = toset(jsondecode(aws_cloudwatch_event_rule.this["lifecycle"].event_pattern)["detail-type"]) == toset(["EC2 Instance-launch Lifecycle Action", "EC2 Instance-terminate Lifecycle Action"])
    error_message = "The lifecycle rule must match both lifecycle action detail-types."
  }
  assert {
    condition     = toset(jsondecode(aws_cloudwatch_event_rule.this["lifecycle"].event_pattern).detail.AutoScalingGroupName) == toset(["my-asg", "api-asg", "proxy-asg"])
    error_message = "The lifecycle rule must be filtered on the backend groups and the proxy group (whose actions the reactor completes at once)."
  }
  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.this["results"].event_pattern).source == ["aws.autoscaling"]
    error_message = "The results rule must match source aws.autoscaling."
  }
  assert {
    condition = toset(jsondecode(aws_cloudwatch_event_rule.this["results"].event_pattern)["detail-type"]) == toset([
      "EC2 Instance Launch Successful", "EC2 Instance Launch Unsuccessful",
      "EC2 Instance Terminate Successful", "EC2 Instance Terminate Unsuccessful",
      "EC2 Instance Detach Successful", "EC2 Instance Detach Unsuccessful",
    ])
    error_message = "The results rule must match launch/terminate/detach successful/unsuccessful."
  }
  assert {
    condition     = toset(jsondecode(aws_cloudwatch_event_rule.this["results"].event_pattern).detail.AutoScalingGroupName) == toset(["my-asg", "api-asg", "proxy-asg"])
    error_message = "The results rule must be filtered on the backend groups and the proxy group."
  }
  assert {
    condition = jsondecode(aws_cloudwatch_event_rule.this["spot"].event_pattern) == {
      source        = ["aws.ec2"]
      "detail-type" = ["EC2 Spot Instance Interruption Warning"]
    }
    error_message = "With rebalance = ignore (the default) the spot rule must match Spot interruption warnings only."
  }
  assert {
    condition     = aws_cloudwatch_event_rule.this["reconcile"].schedule_expression == "rate(5 minutes)"
    error_message = "The reconcile schedule must come from the variable."
  }
  assert {
    condition = alltrue([
      for key, target in aws_cloudwatch_event_target.this :
      target.rule == "reactor-${key}" && target.arn == aws_sqs_queue.inbox.arn && target.arn != aws_lambda_function.this.arn && target.dead_letter_config[0].arn == aws_sqs_queue.dlq.arn
    ])
    error_message = "Every rule must target the inbox (not the function), with the dead-letter queue for undeliverable events."
  }
  assert {
    condition     = toset(keys(aws_cloudwatch_event_target.this)) == toset(keys(aws_cloudwatch_event_rule.this))
    error_message = "Every rule needs its target."
  }

  # --- IAM: least privilege ------------------------------------------------------
  assert {
    condition     = aws_iam_role_policy.this.policy == data.aws_iam_policy_document.reactor.json && aws_iam_role.this.assume_role_policy == data.aws_iam_policy_document.assume_role.json
    error_message = "The role's policies must be the aws_iam_policy_document data sources."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.assume_role.statement : [for p in s.principals : "${p.type} ${join(",", p.identifiers)}"]] == [["Service lambda.amazonaws.com"]] && [for s in data.aws_iam_policy_document.assume_role.statement : s.actions] == [toset(["sts:AssumeRole"])]
    error_message = "Only Lambda may assume the reactor's role."
  }
  assert {
    condition = toset([for s in data.aws_iam_policy_document.reactor.statement : s.sid]) == toset([
      "Logs", "LifecycleActions", "Discovery", "SendCommandDocument", "SendCommandProxies",
      "MarkInterrupted", "Inbox", "Reminders", "Ledger", "LedgerOpen",
    ])
    error_message = "Without dns, kms_key_arn, active tracing or proxy_health_groups the policy must hold exactly the base statements (no autoscaling:SetInstanceHealth)."
  }
  assert {
    condition     = !contains(flatten([for s in data.aws_iam_policy_document.reactor.statement : tolist(s.actions)]), "autoscaling:SetInstanceHealth")
    error_message = "Without proxy_health_groups the role must not be allowed autoscaling:SetInstanceHealth."
  }
  assert {
    condition = [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "LifecycleActions"][0] == toset([
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/api-asg",
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/my-asg",
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/proxy-asg",
    ])
    error_message = "Lifecycle actions must be allowed on the managed groups' and the proxy group's ARNs only."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "LifecycleActions"][0] == toset(["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"])
    error_message = "Only CompleteLifecycleAction and RecordLifecycleActionHeartbeat may be scoped to the groups."
  }
  assert {
    condition = [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "Discovery"][0] == toset([
      "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLifecycleHooks", "autoscaling:DescribeWarmPool", "ec2:DescribeInstances",
      "ec2:DescribeTags",
    ])
    error_message = "Discovery must name the four Auto Scaling reads, ec2:DescribeInstances and ec2:DescribeTags, no Describe* wildcard."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "SendCommandDocument"][0] == toset(["arn:aws:ssm:us-west-2:123456789012:document/reactor-agent"])
    error_message = "ssm:SendCommand must be allowed with the project's document only."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "SendCommandProxies"][0] == toset(["arn:aws:ec2:us-west-2:123456789012:instance/*"]) &&
      [for s in data.aws_iam_policy_document.reactor.statement : [for c in s.condition : "${c.test} ${c.variable}=${join(",", c.values)}"] if s.sid == "SendCommandProxies"][0] == ["StringEquals ssm:resourceTag/haproxy-asg:fleet=edge"]
    )
    error_message = "ssm:SendCommand on instances must be conditioned on the proxy tag."
  }
  assert {
    condition     = !anytrue([for s in data.aws_iam_policy_document.reactor.statement : anytrue([for a in s.actions : contains(["ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands"], a)])])
    error_message = "The reactor no longer reads command results: no ssm:GetCommandInvocation, ssm:ListCommandInvocations or ssm:ListCommands."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "Inbox"][0] == toset(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]) &&
      [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "Inbox"][0] == toset(["arn:aws:sqs:us-west-2:123456789012:reactor-inbox"])
    )
    error_message = "The event source mapping needs to receive, delete, and change the visibility of the inbox's messages, and read its attributes: on the inbox only."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "Ledger"][0] == toset(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem"]) &&
      [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "Ledger"][0] == toset(["arn:aws:dynamodb:us-west-2:123456789012:table/reactor-ledger"])
    )
    error_message = "The ledger's item actions (transactions included) must be allowed on the table only."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "LedgerOpen"][0] == toset(["dynamodb:Query"]) &&
      [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "LedgerOpen"][0] == toset(["arn:aws:dynamodb:us-west-2:123456789012:table/reactor-ledger/index/open"])
    )
    error_message = "Query must be allowed on the ledger's open index only."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "Reminders"][0] == toset(["sqs:SendMessage"]) &&
      [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "Reminders"][0] == toset(["arn:aws:sqs:us-west-2:123456789012:reactor-inbox"]) &&
      !anytrue([for s in data.aws_iam_policy_document.reactor.statement : anytrue([for a in s.actions : a == "sqs:SendMessage"]) if s.sid != "Reminders"])
    )
    error_message = "The reactor may send only to its own inbox (its reminders; the inbox redrives to the DLQ by itself)."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "MarkInterrupted"][0] == toset(["ec2:CreateTags"]) &&
      [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "MarkInterrupted"][0] == toset(["arn:aws:ec2:us-west-2:123456789012:instance/*"])
    )
    error_message = "The reactor may only create tags on instances."
  }
  assert {
    condition = toset([for s in data.aws_iam_policy_document.reactor.statement : [for c in s.condition : "${c.test} ${c.variable}=${join(",", c.values)}"] if s.sid == "MarkInterrupted"][0]) == toset([
      "ForAllValues:StringEquals aws:TagKeys=haproxy:interrupted",
      "StringLike ec2:ResourceTag/aws:autoscaling:groupName=api-asg,my-asg",
    ])
    error_message = "ec2:CreateTags must be limited to the haproxy:interrupted key on instances of the managed groups."
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.reactor.statement :
      s.resources != toset(["*"]) || s.sid == "Discovery"
    ])
    error_message = "Only read-only discovery may use Resource *."
  }
  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.resources == toset(["*"])
      ])) == toset([
      "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLifecycleHooks", "autoscaling:DescribeWarmPool", "ec2:DescribeInstances",
      "ec2:DescribeTags",
    ])
    error_message = "The unscoped actions must be exactly the read-only ones."
  }
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.reactor.statement : s.effect == "Allow" && !contains(s.actions, "*") && !anytrue([for a in s.actions : endswith(a, "*")])])
    error_message = "No statement may allow an action wildcard."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.dlq.statement : [for p in s.principals : "${p.type} ${join(",", p.identifiers)}"] if s.sid == "EventBridgeDeadLetters"][0] == ["Service events.amazonaws.com"] &&
      [for s in data.aws_iam_policy_document.dlq.statement : s.effect if s.sid == "DenyInsecureTransport"][0] == "Deny" &&
      aws_sqs_queue_policy.dlq.policy == data.aws_iam_policy_document.dlq.json
    )
    error_message = "Only EventBridge may send to the dead-letter queue, and only over TLS."
  }
  assert {
    condition     = toset([for s in data.aws_iam_policy_document.dlq.statement : one(s.condition).values if s.sid == "EventBridgeDeadLetters"][0]) == toset([for rule in aws_cloudwatch_event_rule.this : rule.arn])
    error_message = "The dead-letter queue takes the undeliverable events of the module's rules (aws:SourceArn)."
  }

  # --- SSM document: template, typed and restricted parameters -------------------
  assert {
    condition     = jsondecode(aws_ssm_document.agent.content).schemaVersion == "2.2" && aws_ssm_document.agent.document_type == "Command"
    error_message = "The SSM document must be a schema 2.2 Command document."
  }
  assert {
    condition     = aws_ssm_document.agent.content == jsonencode(jsondecode(templatefile("templates/ssm-document.json.tftpl", { execution_timeout = 120 })))
    error_message = "The document must be templates/ssm-document.json.tftpl rendered with execution_timeout = 120 (delivery only)."
  }
  assert {
    condition = (
      jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.timeoutSeconds == "120" && output.ssm_execution_timeout == 120 &&
      length(regexall("\\$\\{", file("templates/ssm-document.json.tftpl"))) == 1 &&
      strcontains(file("templates/ssm-document.json.tftpl"), "\"timeoutSeconds\": \"$${execution_timeout}\"") &&
      !strcontains(file("templates/ssm-document.json.tftpl"), "%%{")
    )
    error_message = "The template must use exactly one template variable, $${execution_timeout}, as the string value of timeoutSeconds (the Rust tests substitute it themselves), and no directive."
  }
  assert {
    condition     = keys(jsondecode(aws_ssm_document.agent.content).parameters) == ["Action", "Change"]
    error_message = "The document must have exactly the parameters Action and Change (Context is gone)."
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
    condition = !anytrue([
      for value in ["'; reboot; '", "e30g' x", "a b=", "$(id)"] :
      can(regex(jsondecode(aws_ssm_document.agent.content).parameters.Change.allowedPattern, value))
    ])
    error_message = "Change's pattern must refuse anything but base64 characters."
  }
  assert {
    condition     = can(regex(jsondecode(aws_ssm_document.agent.content).parameters.Change.allowedPattern, jsondecode(aws_ssm_document.agent.content).parameters.Change.default))
    error_message = "The default Change must satisfy its own pattern."
  }
  assert {
    condition     = contains(jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.runCommand, "  apply) exec /usr/local/bin/agent apply --json --change-base64 '{{ Change }}' ;;")
    error_message = "The apply command must be the one of docs/interfaces.md."
  }
  assert {
    condition     = contains(jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.runCommand, "  sync) exec /usr/local/bin/agent sync --json --no-wait ;;")
    error_message = "The sync command must be the one of the contract (returns at once: --no-wait)."
  }
  assert {
    condition = !anytrue([
      for line in jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.runCommand : strcontains(line, "--wait")
    ])
    error_message = "apply must return once the service accepted the change: never --wait."
  }
  assert {
    condition = alltrue([
      for line in jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.runCommand :
      alltrue([for p in regexall("\\{\\{ *([A-Za-z]+) *\\}\\}", line) : contains(["Action", "Change"], p[0])])
    ])
    error_message = "The script may only use the restricted parameters Action and Change."
  }

  # --- Alarms and dashboard ----------------------------------------------------------
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.dead_letter_queue.namespace == "AWS/SQS" &&
      aws_cloudwatch_metric_alarm.dead_letter_queue.metric_name == "ApproximateNumberOfMessagesVisible" &&
      aws_cloudwatch_metric_alarm.dead_letter_queue.dimensions == tomap({ QueueName = "reactor-dlq" }) &&
      aws_cloudwatch_metric_alarm.dead_letter_queue.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.dead_letter_queue.threshold == 0
    )
    error_message = "The dead-letter alarm must fire on any visible message in the queue."
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.errors.namespace == "AWS/Lambda" &&
      aws_cloudwatch_metric_alarm.errors.metric_name == "Errors" &&
      aws_cloudwatch_metric_alarm.errors.dimensions == tomap({ FunctionName = "reactor" }) &&
      aws_cloudwatch_metric_alarm.errors.statistic == "Sum" &&
      aws_cloudwatch_metric_alarm.errors.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.errors.threshold == 0
    )
    error_message = "The errors alarm must fire on any Lambda error of the function."
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.pending_action_age.namespace == "HaproxyAsg" &&
      aws_cloudwatch_metric_alarm.pending_action_age.metric_name == "PendingActionMaxAge" &&
      aws_cloudwatch_metric_alarm.pending_action_age.dimensions == tomap({ Function = "reactor" }) &&
      aws_cloudwatch_metric_alarm.pending_action_age.statistic == "Maximum" &&
      aws_cloudwatch_metric_alarm.pending_action_age.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.pending_action_age.threshold == 600 &&
      aws_cloudwatch_metric_alarm.pending_action_age.period == 300
    )
    error_message = "The pending-action alarm must fire when PendingActionMaxAge exceeds pending_action_alarm_s (600), over one reconcile period."
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.hosts_dropped.namespace == "HaproxyAsg" &&
      aws_cloudwatch_metric_alarm.hosts_dropped.metric_name == "HostsDropped" &&
      aws_cloudwatch_metric_alarm.hosts_dropped.dimensions == tomap({ Function = "reactor" }) &&
      aws_cloudwatch_metric_alarm.hosts_dropped.statistic == "Sum" &&
      aws_cloudwatch_metric_alarm.hosts_dropped.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.hosts_dropped.threshold == 0 &&
      aws_cloudwatch_metric_alarm.hosts_dropped.evaluation_periods == 1
    )
    error_message = "The hosts-dropped alarm must fire on any HostsDropped in a period."
  }
  assert {
    condition = (
      aws_cloudwatch_metric_alarm.inbox_age.namespace == "AWS/SQS" &&
      aws_cloudwatch_metric_alarm.inbox_age.metric_name == "ApproximateAgeOfOldestMessage" &&
      aws_cloudwatch_metric_alarm.inbox_age.dimensions == tomap({ QueueName = "reactor-inbox" }) &&
      aws_cloudwatch_metric_alarm.inbox_age.statistic == "Maximum" &&
      aws_cloudwatch_metric_alarm.inbox_age.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.inbox_age.threshold == 300
    )
    error_message = "The inbox-age alarm must fire when the inbox's oldest message is older than inbox_age_alarm_s (300)."
  }
  assert {
    condition     = alltrue([for alarm in [aws_cloudwatch_metric_alarm.dead_letter_queue, aws_cloudwatch_metric_alarm.errors, aws_cloudwatch_metric_alarm.pending_action_age, aws_cloudwatch_metric_alarm.hosts_dropped, aws_cloudwatch_metric_alarm.inbox_age] : length(alarm.alarm_actions) == 0 && length(alarm.ok_actions) == 0])
    error_message = "Without alarm_sns_topic_arn the alarms must have no actions."
  }
  assert {
    condition = output.alarm_names == {
      dead_letter_queue  = "reactor-dead-letters"
      errors             = "reactor-errors"
      pending_action_age = "reactor-pending-action-age"
      hosts_dropped      = "reactor-hosts-dropped"
      inbox_age          = "reactor-inbox-age"
    } && output.dashboard_name == "reactor"
    error_message = "The outputs must name the alarms and the dashboard."
  }
  assert {
    condition = output.alarm_arns == { for key, alarm in {
      dead_letter_queue  = aws_cloudwatch_metric_alarm.dead_letter_queue
      errors             = aws_cloudwatch_metric_alarm.errors
      pending_action_age = aws_cloudwatch_metric_alarm.pending_action_age
      hosts_dropped      = aws_cloudwatch_metric_alarm.hosts_dropped
      inbox_age          = aws_cloudwatch_metric_alarm.inbox_age
    } : key => alarm.arn }
    error_message = "alarm_arns must give each alarm's ARN under the keys of alarm_names."
  }
  assert {
    condition = alltrue([
      for metric in ["Events", "LifecycleDecisions", "HostFailures", "InvocationDuration", "EventToDispatch", "PendingActions", "PendingActionMaxAge", "HostsDropped", "ForgedReports", "ReportsApplied"] :
      anytrue(flatten([
        for widget in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : [
          for row in widget.properties.metrics :
          (try(row[0], "") == "HaproxyAsg" && try(row[1], "") == metric && try(row[2], "") == "Function" && try(row[3], "") == "reactor") ||
          strcontains(try(row[0].expression, ""), "{HaproxyAsg,Function,Kind} MetricName=\"${metric}\" Function=\"reactor\"")
        ]
      ]))
    ])
    error_message = "The dashboard must show every reactor metric (namespace HaproxyAsg, dimension Function)."
  }
  assert {
    condition = alltrue([
      for want in [["AWS/Lambda", "Errors", "reactor"], ["AWS/Lambda", "Duration", "reactor"], ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "reactor-dlq"], ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "reactor-inbox"], ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "reactor-inbox"], ["AWS/SQS", "ApproximateAgeOfOldestMessage", "reactor-inbox"]] :
      anytrue(flatten([
        for widget in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : [
          for row in widget.properties.metrics : try(row[0], "") == want[0] && try(row[1], "") == want[1] && try(row[3], "") == want[2]
        ]
      ]))
    ])
    error_message = "The dashboard must show the Lambda's errors and duration, the inbox's depth and age and the dead-letter queue's depth."
  }
}

# The event samples of tests/events/ against the planned patterns.
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

run "detach_successful_matches" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["results"]
    event   = file("tests/events/detach-successful.json")
  }
  assert {
    condition     = output.matches
    error_message = "A backend group's Detach Successful must match the results rule (a detached instance leaves the pools)."
  }
}

run "detach_unsuccessful_proxy_matches" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["results"]
    event   = file("tests/events/detach-unsuccessful-proxy.json")
  }
  assert {
    condition     = output.matches
    error_message = "The proxy group's Detach Unsuccessful must match the results rule."
  }
}

run "detach_unmanaged_ignored" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["results"]
    event   = file("tests/events/detach-successful-unmanaged.json")
  }
  assert {
    condition     = !output.matches
    error_message = "Another group's detach must not reach the reactor."
  }
}

run "detach_not_lifecycle" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["lifecycle"]
    event   = file("tests/events/detach-successful.json")
  }
  assert {
    condition     = !output.matches
    error_message = "A detach result must not match the lifecycle rule."
  }
}

run "spot_warning_matches" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["spot"]
    event   = file("tests/events/spot-interruption-warning.json")
  }
  assert {
    condition     = output.matches
    error_message = "A Spot interruption warning must match the spot rule."
  }
}

run "with_rebalance_drain" {
  command = plan
  variables {
    rebalance = "drain"
  }
  assert {
    condition = jsondecode(aws_cloudwatch_event_rule.this["spot"].event_pattern)["detail-type"] == [
      "EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
    ]
    error_message = "With rebalance = drain the spot rule must match rebalance recommendations too."
  }
}

run "rebalance_recommendation_matches_with_drain" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.with_rebalance_drain.event_patterns["spot"]
    event   = file("tests/events/rebalance-recommendation.json")
  }
  assert {
    condition     = output.matches
    error_message = "With rebalance = drain a rebalance recommendation must match the spot rule."
  }
}

run "rebalance_recommendation_stays_out_with_ignore" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["spot"]
    event   = file("tests/events/rebalance-recommendation.json")
  }
  assert {
    condition     = !output.matches
    error_message = "With rebalance = ignore a rebalance recommendation must not reach the inbox at all."
  }
}

run "instance_state_change_ignored" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["spot"]
    event   = file("tests/events/instance-state-change.json")
  }
  assert {
    condition     = !output.matches
    error_message = "Other EC2 events must not match the spot rule."
  }
}

# managed_groups: globs reach MANAGED_GROUPS, the rules (wildcard filters) and the role.
run "managed_group_globs" {
  command = plan

  variables {
    managed_groups = { "web-*" = ["web", "web-canary:8081"], "my-asg" = ["web"], "batch/blue" = ["api"] }
    rebalance      = "drain"
  }

  assert {
    condition     = aws_lambda_function.this.environment[0].variables["MANAGED_GROUPS"] == "batch/blue -> api, my-asg -> web, web-* -> web web-canary:8081"
    error_message = "MANAGED_GROUPS must be managed_groups' entries, sorted, each `glob -> pools`."
  }
  assert {
    condition     = output.managed_groups == tolist(["api-asg", "batch/blue", "my-asg", "web-*"])
    error_message = "The managed_groups output must list every group managed: POOLS' and managed_groups' names and globs."
  }
  assert {
    condition     = aws_lambda_function.this.environment[0].variables["REBALANCE"] == "drain"
    error_message = "REBALANCE must come from the variable."
  }
  assert {
    condition     = jsonencode(jsondecode(aws_cloudwatch_event_rule.this["lifecycle"].event_pattern).detail.AutoScalingGroupName) == jsonencode(["api-asg", "batch/blue", "my-asg", "proxy-asg", { wildcard = "web-*" }])
    error_message = "The lifecycle rule must match the managed names exactly and the globs with a wildcard filter."
  }
  assert {
    condition     = jsonencode(jsondecode(aws_cloudwatch_event_rule.this["results"].event_pattern).detail.AutoScalingGroupName) == jsonencode(["api-asg", "batch/blue", "my-asg", "proxy-asg", { wildcard = "web-*" }])
    error_message = "The results rule must match the managed groups and the proxy group."
  }
  assert {
    condition     = contains([for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "LifecycleActions"][0], "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/web-*")
    error_message = "Lifecycle actions must be allowed on the globbed groups too."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : [for c in s.condition : c.values if c.variable == "ec2:ResourceTag/aws:autoscaling:groupName"][0] if s.sid == "MarkInterrupted"][0] == tolist(["api-asg", "batch/blue", "my-asg", "web-*"])
    error_message = "Tagging must be allowed on instances of every managed group (StringLike handles the globs)."
  }
  assert {
    condition     = toset([for hook in aws_autoscaling_lifecycle_hook.this : hook.autoscaling_group_name]) == toset(["my-asg", "api-asg"])
    error_message = "Hooks go on the groups of pools only (a glob names no group to put a hook on)."
  }
}

run "glob_lifecycle_sample_matches" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.managed_group_globs.event_patterns["lifecycle"]
    event   = file("tests/events/launch-lifecycle-action-glob.json")
  }
  assert {
    condition     = output.matches
    error_message = "A lifecycle action of a group matched by a managed glob must reach the reactor."
  }
}

run "glob_does_not_match_unmanaged" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.managed_group_globs.event_patterns["results"]
    event   = file("tests/events/launch-successful-unmanaged.json")
  }
  assert {
    condition     = !output.matches
    error_message = "A glob must not let another group's events through."
  }
}

run "glob_sample_not_matched_without_glob" {
  command = plan
  module {
    source = "./tests/event-match"
  }
  variables {
    pattern = run.defaults.event_patterns["lifecycle"]
    event   = file("tests/events/launch-lifecycle-action-glob.json")
  }
  assert {
    condition     = !output.matches
    error_message = "Without the glob the web-blue group is not managed."
  }
}

run "alarm_topic" {
  command = plan

  variables {
    alarm_sns_topic_arn    = "arn:aws:sns:us-west-2:123456789012:ops"
    pending_action_alarm_s = 1800
    reconcile_schedule     = "rate(2 minutes)"
    inbox_age_alarm_s      = 900
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.inbox_age.threshold == 900
    error_message = "The inbox-age alarm takes its threshold from inbox_age_alarm_s."
  }

  assert {
    condition = alltrue([
      for alarm in [aws_cloudwatch_metric_alarm.dead_letter_queue, aws_cloudwatch_metric_alarm.errors, aws_cloudwatch_metric_alarm.pending_action_age, aws_cloudwatch_metric_alarm.hosts_dropped, aws_cloudwatch_metric_alarm.inbox_age] :
      alarm.alarm_actions == toset(["arn:aws:sns:us-west-2:123456789012:ops"]) && alarm.ok_actions == toset(["arn:aws:sns:us-west-2:123456789012:ops"])
    ])
    error_message = "With alarm_sns_topic_arn every alarm must notify the topic."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.pending_action_age.threshold == 1800 && aws_cloudwatch_metric_alarm.pending_action_age.period == 120
    error_message = "The pending-action alarm takes its threshold from pending_action_alarm_s and its period from the reconcile schedule."
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
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "DnsRecords"][0] == toset(["arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"])
    error_message = "route53:ChangeResourceRecordSets must be allowed on the zone only."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : [for c in s.condition : c.values if c.variable == "route53:ChangeResourceRecordSetsNormalizedRecordNames"][0] if s.sid == "DnsRecords"][0] == tolist(["proxies.example.com"])
    error_message = "Record changes must be limited to the proxies' record name."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "Tracing"][0] == toset(["xray:PutTraceSegments", "xray:PutTelemetryRecords"])
    error_message = "Active tracing needs the X-Ray write permission."
  }
}

# Zones, weights and proxy-detected health: the environment, POOLS' weights, and
# SetInstanceHealth scoped to the groups that opted in (names, a managed glob, a name a
# managed glob matches).
run "zones_weights_and_proxy_health" {
  command = plan

  variables {
    pools = {
      "my-asg"  = [{ name = "web", port = 8080, weight = 50 }]
      "api-asg" = [{ name = "api", port = 9000, weight = 0 }, { name = "api-admin", port = 9001 }]
    }
    managed_groups         = { "web-*" = ["web"] }
    member_zones           = true
    proxy_health_groups    = ["my-asg", "web-*", "web-blue"]
    unhealthy_after_s      = 60
    unhealthy_quorum       = 2
    max_unhealthy_fraction = 0.5
  }

  assert {
    condition = (
      aws_lambda_function.this.environment[0].variables["MEMBER_ZONES"] == "true" &&
      aws_lambda_function.this.environment[0].variables["PROXY_HEALTH_GROUPS"] == "my-asg,web-*,web-blue" &&
      aws_lambda_function.this.environment[0].variables["UNHEALTHY_AFTER_S"] == "60" &&
      aws_lambda_function.this.environment[0].variables["UNHEALTHY_QUORUM"] == "2" &&
      aws_lambda_function.this.environment[0].variables["MAX_UNHEALTHY_FRACTION"] == "0.5"
    )
    error_message = "member_zones, proxy_health_groups (comma-joined, in order), unhealthy_after_s, unhealthy_quorum and max_unhealthy_fraction must reach MEMBER_ZONES, PROXY_HEALTH_GROUPS, UNHEALTHY_AFTER_S, UNHEALTHY_QUORUM and MAX_UNHEALTHY_FRACTION."
  }
  assert {
    condition = jsondecode(aws_lambda_function.this.environment[0].variables["POOLS"]) == {
      "my-asg"  = [{ name = "web", port = 8080, ports = [], weight = 50 }]
      "api-asg" = [{ name = "api", port = 9000, ports = [], weight = 0 }, { name = "api-admin", port = 9001, ports = [] }]
    }
    error_message = "POOLS must carry \"weight\" on the entries that set one (0 included) and on no other."
  }
  assert {
    condition     = output.group_pools["my-asg"][0].weight == 50 && output.group_pools["api-asg"][0].weight == 0 && output.group_pools["api-asg"][1].weight == null
    error_message = "group_pools must carry each entry's weight (null when unset)."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : s.actions if s.sid == "InstanceHealth"][0] == toset(["autoscaling:SetInstanceHealth"])
    error_message = "With proxy_health_groups the role needs autoscaling:SetInstanceHealth, in a statement of its own."
  }
  assert {
    condition = [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "InstanceHealth"][0] == toset([
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/my-asg",
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/web-*",
      "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/web-blue",
    ])
    error_message = "autoscaling:SetInstanceHealth must be scoped by group ARN to proxy_health_groups (as the lifecycle actions are to the managed groups): not api-asg, not the proxy group, not *."
  }
  assert {
    condition     = length([for s in data.aws_iam_policy_document.reactor.statement : s if contains(tolist(s.actions), "autoscaling:SetInstanceHealth")]) == 1 && length([for s in data.aws_iam_policy_document.reactor.statement : s if s.sid == "InstanceHealth" && length(s.condition) == 0]) == 1
    error_message = "SetInstanceHealth must be in the InstanceHealth statement only."
  }
}

run "proxy_health_groups_must_be_managed" {
  command = plan
  variables {
    proxy_health_groups = ["my-asg", "other-asg"]
  }
  expect_failures = [var.proxy_health_groups]
}

# A glob wider or other than a managed one could reach groups the reactor does not manage.
run "proxy_health_glob_must_be_a_managed_glob" {
  command = plan
  variables {
    managed_groups      = { "web-*" = ["web"] }
    proxy_health_groups = ["web-b*"]
  }
  expect_failures = [var.proxy_health_groups]
}

run "proxy_health_groups_validated" {
  command = plan
  variables {
    proxy_health_groups = ["my-asg,api-asg"]
  }
  expect_failures = [var.proxy_health_groups]
}

run "unhealthy_after_lower_bound" {
  command = plan
  variables {
    unhealthy_after_s = 4
  }
  expect_failures = [var.unhealthy_after_s]
}

run "unhealthy_after_upper_bound" {
  command = plan
  variables {
    unhealthy_after_s = 3601
  }
  expect_failures = [var.unhealthy_after_s]
}

run "unhealthy_quorum_bounds" {
  command = plan
  variables {
    unhealthy_quorum = 1001
  }
  expect_failures = [var.unhealthy_quorum]
}

run "unhealthy_quorum_integer" {
  command = plan
  variables {
    unhealthy_quorum = 1.5
  }
  expect_failures = [var.unhealthy_quorum]
}

run "max_unhealthy_fraction_above_zero" {
  command = plan
  variables {
    max_unhealthy_fraction = 0
  }
  expect_failures = [var.max_unhealthy_fraction]
}

run "max_unhealthy_fraction_at_most_one" {
  command = plan
  variables {
    max_unhealthy_fraction = 1.5
  }
  expect_failures = [var.max_unhealthy_fraction]
}

run "pool_weight_upper_bound" {
  command = plan
  variables {
    pools = { "my-asg" = [{ name = "web", port = 8080, weight = 257 }] }
  }
  expect_failures = [var.pools]
}

run "pool_weight_integer" {
  command = plan
  variables {
    pools = { "my-asg" = [{ name = "web", port = 8080, weight = 1.5 }] }
  }
  expect_failures = [var.pools]
}

# A one-hour drain: the lifecycle action outlives the hook's heartbeat timeout, which is
# fine when the reconcile heartbeats at least twice per timeout.
run "long_drain" {
  command = plan

  variables {
    drain_timeout_s              = 3600
    heartbeat_timeout            = 900
    maximum_event_age_in_seconds = 600
  }

  assert {
    condition     = jsondecode(aws_ssm_document.agent.content).mainSteps[0].inputs.timeoutSeconds == "120" && output.ssm_execution_timeout == 120
    error_message = "timeoutSeconds is a fixed 120 (delivery only), whatever the drain and health timeouts."
  }
  assert {
    condition     = aws_lambda_function.this.environment[0].variables["DRAIN_TIMEOUT_S"] == "3600"
    error_message = "DRAIN_TIMEOUT_S must carry the long drain."
  }
}

run "heartbeat_shorter_than_two_reconciles" {
  command = plan
  variables {
    drain_timeout_s   = 600
    heartbeat_timeout = 500
  }
  expect_failures = [var.heartbeat_timeout]
}

# Even a change that fits in the heartbeat timeout needs the reconcile within it: a lost
# terminate event is only seen by the reconcile (AWS's own default was a heartbeat of one
# reconcile period: the instance died still in the pools).
run "heartbeat_one_reconcile_period_is_refused" {
  command = plan
  variables {
    heartbeat_timeout  = 300
    reconcile_schedule = "rate(5 minutes)"
  }
  expect_failures = [var.heartbeat_timeout]
}

run "heartbeat_two_reconciles_and_a_run" {
  command = plan
  variables {
    heartbeat_timeout  = 300
    reconcile_schedule = "rate(2 minutes)"
    timeout            = 60
  }
  assert {
    condition     = aws_cloudwatch_event_rule.this["reconcile"].schedule_expression == "rate(2 minutes)"
    error_message = "300 s covers two 2-minute reconciles and a 60 s invocation."
  }
}

run "heartbeat_two_reconciles_but_not_the_run" {
  command = plan
  variables {
    heartbeat_timeout  = 300
    reconcile_schedule = "rate(2 minutes)"
    timeout            = 61
  }
  expect_failures = [var.heartbeat_timeout]
}

run "event_age_above_heartbeat" {
  command = plan
  variables {
    maximum_event_age_in_seconds = 721
  }
  expect_failures = [var.maximum_event_age_in_seconds]
}

run "event_age_minimum" {
  command = plan
  variables {
    maximum_event_age_in_seconds = 59
  }
  expect_failures = [var.maximum_event_age_in_seconds]
}

run "reconcile_schedule_minutes_only" {
  command = plan
  variables {
    reconcile_schedule = "rate(1 hour)"
  }
  expect_failures = [var.reconcile_schedule]
}

run "reconcile_schedule_plural" {
  command = plan
  variables {
    reconcile_schedule = "rate(5 minute)"
  }
  expect_failures = [var.reconcile_schedule]
}

run "drain_timeout_upper_bound" {
  command = plan
  variables {
    drain_timeout_s = 3601
  }
  expect_failures = [var.drain_timeout_s]
}

run "timeout_lower_bound" {
  command = plan
  variables {
    timeout = 9
  }
  expect_failures = [var.timeout]
}

run "timeout_upper_bound" {
  command = plan
  variables {
    timeout = 901
  }
  expect_failures = [var.timeout]
}

run "rebalance_validated" {
  command = plan
  variables {
    rebalance = "terminate"
  }
  expect_failures = [var.rebalance]
}

run "spot_drain_timeout_upper_bound" {
  command = plan
  variables {
    spot_drain_timeout_s = 111
  }
  expect_failures = [var.spot_drain_timeout_s]
}

run "spot_drain_timeout_lower_bound" {
  command = plan
  variables {
    spot_drain_timeout_s = 9
  }
  expect_failures = [var.spot_drain_timeout_s]
}

run "managed_groups_validated" {
  command = plan
  variables {
    managed_groups = { "web-*" = ["web"], "web,api" = ["web"] }
  }
  expect_failures = [var.managed_groups]
}

# Tags only narrow: an entry must say which pools its groups may feed, each one pools
# defines or written with its port.
run "managed_groups_name_their_pools" {
  command = plan
  variables {
    managed_groups = { "web-*" = [] }
  }
  expect_failures = [var.managed_groups]
}

run "managed_groups_pools_have_a_port" {
  command = plan
  variables {
    managed_groups = { "web-*" = ["internal"] }
  }
  expect_failures = [var.managed_groups]
}

run "pool_ports_validated" {
  command = plan
  variables {
    pools = { "my-asg" = [{ name = "web", port = 8080, ports = [8443, 70000] }] }
  }
  expect_failures = [var.pools]
}

run "alarm_topic_validated" {
  command = plan
  variables {
    alarm_sns_topic_arn = "ops-topic"
  }
  expect_failures = [var.alarm_sns_topic_arn]
}

run "pending_action_alarm_validated" {
  command = plan
  variables {
    pending_action_alarm_s = 30
  }
  expect_failures = [var.pending_action_alarm_s]
}

run "pool_name_validated" {
  command = plan
  variables {
    pools = { "my-asg" = [{ name = "web app", port = 8080 }] }
  }
  expect_failures = [var.pools]
}

run "pool_port_validated" {
  command = plan
  variables {
    pools = { "my-asg" = [{ name = "web", port = 65536 }] }
  }
  expect_failures = [var.pools]
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

# --- The inbox's event source mapping, the ledger's key: tuned and validated ----------

# Batches above 10 with a batching window (AWS's rule), a longer Lambda timeout, a
# customer-managed key: the queues, the table and the role follow.
run "inbox_tuned_with_kms" {
  command = plan

  variables {
    timeout                        = 120
    inbox_batch_size               = 100
    inbox_batching_window_s        = 5
    inbox_max_concurrency          = 20
    reserved_concurrent_executions = 20
    host_report_timeout_s          = 45
    ledger_ttl_s                   = 172800
    kms_key_arn                    = "arn:aws:kms:us-west-2:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
  }

  assert {
    condition = (
      aws_lambda_event_source_mapping.inbox.batch_size == 100 &&
      aws_lambda_event_source_mapping.inbox.maximum_batching_window_in_seconds == 5 &&
      aws_lambda_event_source_mapping.inbox.scaling_config[0].maximum_concurrency == 20
    )
    error_message = "The event source mapping must take batch size, window and maximum concurrency from the variables."
  }
  assert {
    condition     = aws_sqs_queue.inbox.visibility_timeout_seconds == 6 * 120 + 5
    error_message = "The inbox's visibility timeout must follow the Lambda timeout and the batching window."
  }
  assert {
    condition = (
      aws_sqs_queue.inbox.kms_master_key_id == "arn:aws:kms:us-west-2:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab" &&
      aws_sqs_queue.dlq.kms_master_key_id == "arn:aws:kms:us-west-2:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab" &&
      aws_dynamodb_table.ledger.server_side_encryption[0].enabled && aws_dynamodb_table.ledger.server_side_encryption[0].kms_key_arn == "arn:aws:kms:us-west-2:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
    )
    error_message = "With kms_key_arn the queues and the ledger must be encrypted with that key."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.reactor.statement : s.resources if s.sid == "Kms"][0] == toset(["arn:aws:kms:us-west-2:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"])
    error_message = "With kms_key_arn the role must be allowed the key (the inbox's and the ledger's data)."
  }
  assert {
    condition = (
      aws_lambda_function.this.environment[0].variables["HOST_REPORT_TIMEOUT_S"] == "45" &&
      aws_lambda_function.this.environment[0].variables["LEDGER_TTL_S"] == "172800"
    )
    error_message = "HOST_REPORT_TIMEOUT_S and LEDGER_TTL_S must come from the variables."
  }
}

run "unreserved_concurrency_takes_any_maximum" {
  command = plan
  variables {
    reserved_concurrent_executions = -1
    inbox_max_concurrency          = 1000
  }
  assert {
    condition     = aws_lambda_event_source_mapping.inbox.scaling_config[0].maximum_concurrency == 1000
    error_message = "Without reserved concurrency any maximum concurrency up to 1000 is accepted."
  }
}

run "batch_above_ten_needs_window" {
  command = plan
  variables {
    inbox_batch_size = 11
  }
  expect_failures = [var.inbox_batching_window_s]
}

run "batch_size_lower_bound" {
  command = plan
  variables {
    inbox_batch_size = 0
  }
  expect_failures = [var.inbox_batch_size]
}

run "batch_size_upper_bound" {
  command = plan
  variables {
    inbox_batch_size        = 10001
    inbox_batching_window_s = 1
  }
  expect_failures = [var.inbox_batch_size]
}

run "batching_window_upper_bound" {
  command = plan
  variables {
    inbox_batching_window_s = 301
  }
  expect_failures = [var.inbox_batching_window_s]
}

run "max_concurrency_lower_bound" {
  command = plan
  variables {
    inbox_max_concurrency = 1
  }
  expect_failures = [var.inbox_max_concurrency]
}

run "max_concurrency_upper_bound" {
  command = plan
  variables {
    reserved_concurrent_executions = -1
    inbox_max_concurrency          = 1001
  }
  expect_failures = [var.inbox_max_concurrency]
}

run "max_concurrency_above_reserved" {
  command = plan
  variables {
    inbox_max_concurrency = 11
  }
  expect_failures = [var.inbox_max_concurrency]
}

run "inbox_age_alarm_validated" {
  command = plan
  variables {
    inbox_age_alarm_s = 59
  }
  expect_failures = [var.inbox_age_alarm_s]
}

run "host_report_timeout_lower_bound" {
  command = plan
  variables {
    host_report_timeout_s = 0
  }
  expect_failures = [var.host_report_timeout_s]
}

run "host_report_timeout_upper_bound" {
  command = plan
  variables {
    host_report_timeout_s = 3601
  }
  expect_failures = [var.host_report_timeout_s]
}

run "ledger_ttl_lower_bound" {
  command = plan
  variables {
    ledger_ttl_s = 3599
  }
  expect_failures = [var.ledger_ttl_s]
}

run "ledger_ttl_upper_bound" {
  command = plan
  variables {
    ledger_ttl_s = 31536001
  }
  expect_failures = [var.ledger_ttl_s]
}

# A decided item must outlive the oldest event EventBridge may still deliver.
run "ledger_ttl_below_event_age" {
  command = plan
  variables {
    heartbeat_timeout            = 7200
    maximum_event_age_in_seconds = 7200
    ledger_ttl_s                 = 3600
  }
  expect_failures = [var.ledger_ttl_s]
}

run "proxy_role_arn_validated" {
  command = plan
  variables {
    proxy_role_arn = "proxy-role"
  }
  expect_failures = [var.proxy_role_arn]
}

run "proxy_role_arn_not_a_user" {
  command = plan
  variables {
    proxy_role_arn = "arn:aws:iam::123456789012:user/proxy"
  }
  expect_failures = [var.proxy_role_arn]
}

run "proxy_role_id_validated" {
  command = plan
  variables {
    proxy_role_id = "proxy-20260101000000000000000001"
  }
  expect_failures = [var.proxy_role_id]
}

# A user's unique id (AIDA...) is no role's: its sessions could never be a proxy's.
run "proxy_role_id_not_a_user_id" {
  command = plan
  variables {
    proxy_role_id = "AIDA1234567890EXAMPLE"
  }
  expect_failures = [var.proxy_role_id]
}

# The boundary: a deny of haproxy:interrupted to everyone but the reactor, as an SCP.
run "interrupted_tag_guard" {
  command = plan
  assert {
    condition = (
      jsondecode(output.interrupted_tag_guard_policy).Statement[0].Effect == "Deny" &&
      toset(jsondecode(output.interrupted_tag_guard_policy).Statement[0].Action) == toset(["ec2:CreateTags", "ec2:DeleteTags"]) &&
      jsondecode(output.interrupted_tag_guard_policy).Statement[0].Condition["ForAnyValue:StringEquals"]["aws:TagKeys"] == "haproxy:interrupted" &&
      jsondecode(output.interrupted_tag_guard_policy).Statement[0].Condition["ArnNotLike"]["aws:PrincipalArn"] == "arn:aws:iam::123456789012:role/reactor"
    )
    error_message = "The guard must deny creating and deleting the haproxy:interrupted tag."
  }
}
