data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  account   = data.aws_caller_identity.current.account_id

  # The groups whose pools var.pools names: they get the lifecycle hooks.
  backend_groups = sort(keys(var.pools))
  # Every group the reactor may manage (MANAGED_GROUPS): the POOLS groups plus
  # var.managed_groups, which may hold `*` globs (groups whose pools come from their tags).
  managed_groups = sort(distinct(concat(local.backend_groups, var.managed_groups == null ? [] : var.managed_groups)))
  managed_exact  = [for group in local.managed_groups : group if !strcontains(group, "*")]
  managed_globs  = [for group in local.managed_groups : group if strcontains(group, "*")]
  # EventBridge matches exact names as values and globs with a wildcard filter.
  managed_group_filter = concat(local.managed_exact, [for glob in local.managed_globs : { wildcard = glob }])
  # The proxy group's launch/terminate results matter too: they drive the Route 53 records.
  watched_group_filter = concat(
    sort(distinct(concat(local.managed_exact, [var.proxy_group_name]))),
    [for glob in local.managed_globs : { wildcard = glob }],
  )

  # ARNs are built here rather than read from computed attributes so that the policy is
  # known at plan time (and testable with a mocked provider). IAM treats `*` in a
  # resource ARN as a wildcard, so the globs of var.managed_groups carry over.
  group_arns = [
    for group in local.managed_groups :
    "arn:${local.partition}:autoscaling:${local.region}:${local.account}:autoScalingGroup:*:autoScalingGroupName/${group}"
  ]
  ssm_document_name = "${var.name}-agent"
  ssm_document_arn  = "arn:${local.partition}:ssm:${local.region}:${local.account}:document/${local.ssm_document_name}"
  instances_arn     = "arn:${local.partition}:ec2:${local.region}:${local.account}:instance/*"
  log_group_name    = "/aws/lambda/${var.name}"
  log_group_arn     = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.log_group_name}"
  dlq_name          = "${var.name}-dlq"
  dlq_arn           = "arn:${local.partition}:sqs:${local.region}:${local.account}:${local.dlq_name}"
  zone_arn          = var.dns == null ? null : "arn:${local.partition}:route53:::hostedzone/${var.dns.zone_id}"
  # Route 53 normalises record names to lower case without the trailing dot in its condition keys.
  dns_record_normalized = var.dns == null ? null : trimsuffix(lower(var.dns.record_name), ".")

  # How long one change may run on a proxy: wait for health, then for the drain, plus a
  # margin for the agent's own start and report. The SSM document's timeoutSeconds.
  execution_timeout = var.health_timeout_s + var.drain_timeout_s + 60
  # The reconcile's period in seconds (variables.tf accepts only rate(N minute[s])).
  reconcile_period_s = 60 * tonumber(regex("^rate\\(([0-9]+) minutes?\\)$", var.reconcile_schedule)[0])

  # The tag the reactor puts on an instance that got a Spot interruption warning.
  interrupted_tag_key = "haproxy:interrupted"

  transitions = {
    launch    = "autoscaling:EC2_INSTANCE_LAUNCHING"
    terminate = "autoscaling:EC2_INSTANCE_TERMINATING"
  }
  hooks = {
    for pair in setproduct(local.backend_groups, keys(local.transitions)) :
    "${pair[0]}/${pair[1]}" => {
      group      = pair[0]
      transition = local.transitions[pair[1]]
      name       = "${var.name}-${pair[1]}"
    }
  }

  lifecycle_detail_types = [
    "EC2 Instance-launch Lifecycle Action",
    "EC2 Instance-terminate Lifecycle Action",
  ]
  result_detail_types = [
    "EC2 Instance Launch Successful",
    "EC2 Instance Launch Unsuccessful",
    "EC2 Instance Terminate Successful",
    "EC2 Instance Terminate Unsuccessful",
  ]
  # Final states of a command: the reactor completes the lifecycle actions of a change
  # when its command ends (it no longer waits in the invocation that sent it).
  command_final_statuses = ["Success", "Failed", "TimedOut", "Cancelled"]
  spot_detail_types = [
    "EC2 Spot Instance Interruption Warning",
    "EC2 Instance Rebalance Recommendation",
  ]

  event_rules = {
    lifecycle = {
      description = "Lifecycle actions (Pending:Wait, Terminating:Wait) of the managed groups"
      event_pattern = jsonencode({
        source        = ["aws.autoscaling"]
        "detail-type" = local.lifecycle_detail_types
        detail        = { AutoScalingGroupName = local.managed_group_filter }
      })
      schedule_expression = null
    }
    results = {
      description = "Launch/terminate results of the managed groups and the proxy group"
      event_pattern = jsonencode({
        source        = ["aws.autoscaling"]
        "detail-type" = local.result_detail_types
        detail        = { AutoScalingGroupName = local.watched_group_filter }
      })
      schedule_expression = null
    }
    commands = {
      description = "Final states of the agent document's commands: completes the lifecycle actions a change was sent for"
      event_pattern = jsonencode({
        source        = ["aws.ssm"]
        "detail-type" = ["EC2 Command Status-change Notification"]
        detail = {
          "document-name" = [local.ssm_document_name]
          status          = local.command_final_statuses
        }
      })
      schedule_expression = null
    }
    # No pattern can restrict these two to the managed groups' instances: their detail
    # holds the instance id only, no group name or tag. Every Spot instance of the account
    # and region reaches the reactor, which looks the instance up and ignores it unless it
    # belongs to a managed group.
    spot = {
      description = "Spot interruption warnings and rebalance recommendations (every instance; the reactor ignores unmanaged ones)"
      event_pattern = jsonencode({
        source        = ["aws.ec2"]
        "detail-type" = local.spot_detail_types
      })
      schedule_expression = null
    }
    reconcile = {
      description         = "Periodic reconcile: repairs whatever a lost or reordered event left behind, heartbeats running drains"
      event_pattern       = null
      schedule_expression = var.reconcile_schedule
    }
  }

  environment = merge(
    {
      POOLS            = jsonencode(var.pools)
      PROXY_TAG_KEY    = var.proxy_tag_key
      PROXY_TAG_VALUE  = var.proxy_tag_value
      PROXY_GROUP      = var.proxy_group_name
      SSM_DOCUMENT     = aws_ssm_document.agent.name
      HEALTH_TIMEOUT_S = tostring(var.health_timeout_s)
      DRAIN_TIMEOUT_S  = tostring(var.drain_timeout_s)
      # The hooks created below: the reactor completes these and never another
      # system's hook on the same groups.
      LIFECYCLE_HOOKS = join(",", sort(distinct([for h in local.hooks : h.name])))
      # Only these groups (names or `*` globs) are ever managed.
      MANAGED_GROUPS       = join(",", local.managed_groups)
      REBALANCE            = var.rebalance
      SPOT_DRAIN_TIMEOUT_S = tostring(var.spot_drain_timeout_s)
    },
    var.dns == null ? {} : {
      DNS_ZONE_ID     = var.dns.zone_id
      DNS_RECORD_NAME = var.dns.record_name
      DNS_TTL         = tostring(var.dns.ttl)
    },
  )

  # CloudWatch metrics the reactor writes as Embedded Metric Format log lines.
  metric_namespace = "HaproxyAsg"
}

################################################################################
# SSM Command document run on the proxies
################################################################################

# templates/ssm-document.json.tftpl (docs/interfaces.md): three parameters, all
# restricted, so that nothing reaches the shell unvalidated. `Action` can only be one of
# two words and `Change` only base64 characters, so the single quotes of the script cannot
# be broken out of; `Context` (base64 too) is for the reactor alone and the script never
# uses it. The default Change "e30g" (base64 of "{} ") is the shortest value the pattern
# admits; `apply` rejects it (exit 2). jsondecode() fails the plan if the template is not
# JSON once rendered.
resource "aws_ssm_document" "agent" {
  name            = local.ssm_document_name
  document_type   = "Command"
  document_format = "JSON"
  target_type     = "/AWS::EC2::Instance"
  content = jsonencode(jsondecode(templatefile("${path.module}/templates/ssm-document.json.tftpl", {
    execution_timeout = local.execution_timeout
  })))

  tags = var.tags
}

################################################################################
# Lifecycle hooks on the backend groups
################################################################################

resource "aws_autoscaling_lifecycle_hook" "this" {
  for_each = local.hooks

  name                   = each.value.name
  autoscaling_group_name = each.value.group
  lifecycle_transition   = each.value.transition
  heartbeat_timeout      = var.heartbeat_timeout
  default_result         = var.default_result
}

################################################################################
# IAM role (least privilege)
################################################################################

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "Lambda"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "reactor" {
  statement {
    sid       = "Logs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}:*"]
  }

  statement {
    sid       = "LifecycleActions"
    effect    = "Allow"
    actions   = ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
    resources = local.group_arns
  }

  statement {
    # Read-only discovery: these actions support no resource-level permission.
    sid    = "Discovery"
    effect = "Allow"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLifecycleHooks",
      "autoscaling:DescribeWarmPool",
      "ec2:DescribeInstances",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "SendCommandDocument"
    effect    = "Allow"
    actions   = ["ssm:SendCommand"]
    resources = [local.ssm_document_arn]
  }

  statement {
    sid       = "SendCommandProxies"
    effect    = "Allow"
    actions   = ["ssm:SendCommand"]
    resources = [local.instances_arn]

    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/${var.proxy_tag_key}"
      values   = [var.proxy_tag_value]
    }
  }

  statement {
    # Command results, and the reconcile's look for running and recently finished
    # commands of the document: these actions support no resource-level permission.
    sid       = "CommandResults"
    effect    = "Allow"
    actions   = ["ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands"]
    resources = ["*"]
  }

  statement {
    # Marks an instance that got a Spot interruption warning: that one tag key only, and
    # only on instances of the managed groups (Auto Scaling tags its instances with
    # aws:autoscaling:groupName).
    sid       = "MarkInterrupted"
    effect    = "Allow"
    actions   = ["ec2:CreateTags"]
    resources = [local.instances_arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = [local.interrupted_tag_key]
    }

    condition {
      test     = "StringLike"
      variable = "ec2:ResourceTag/aws:autoscaling:groupName"
      values   = local.managed_groups
    }
  }

  statement {
    sid       = "DeadLetterQueue"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [local.dlq_arn]
  }

  dynamic "statement" {
    for_each = var.dns == null ? [] : [1]
    content {
      sid       = "DnsRecords"
      effect    = "Allow"
      actions   = ["route53:ChangeResourceRecordSets"]
      resources = [local.zone_arn]

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "route53:ChangeResourceRecordSetsNormalizedRecordNames"
        values   = [local.dns_record_normalized]
      }

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "route53:ChangeResourceRecordSetsRecordTypes"
        values   = ["A"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.dns == null ? [] : [1]
    content {
      sid       = "DnsRead"
      effect    = "Allow"
      actions   = ["route53:ListResourceRecordSets"]
      resources = [local.zone_arn]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "Kms"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = var.tracing_mode == "Active" ? [1] : []
    content {
      # X-Ray write actions support no resource-level permission.
      sid       = "Tracing"
      effect    = "Allow"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  description        = "haproxy-asg reactor Lambda"
  assume_role_policy = data.aws_iam_policy_document.assume_role.json

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "reactor"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.reactor.json
}

################################################################################
# Dead-letter queue (failed asynchronous invocations and undeliverable events)
################################################################################

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn

  tags = var.tags
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "EventBridgeDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [local.dlq_arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [for rule in aws_cloudwatch_event_rule.this : rule.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [local.dlq_arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

################################################################################
# Lambda function
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:A customer-managed key is optional (var.kms_key_arn); without one CloudWatch Logs encrypts with its own key. The reactor logs no secrets.
  name              = local.log_group_name
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_117:The reactor only calls AWS APIs (Auto Scaling, EC2, SSM, Route 53); a VPC would add NAT or endpoints and no protection.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the operator owns; the zip is built from this repository by scripts/build-artifacts.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (group names, tag, document name); a customer-managed key is optional through var.kms_key_arn.
  function_name                  = var.name
  description                    = "haproxy-asg reactor: Auto Scaling lifecycle events in, HAProxy backend changes out"
  role                           = aws_iam_role.this.arn
  filename                       = var.lambda_zip_path
  source_code_hash               = filebase64sha256(var.lambda_zip_path)
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrent_executions
  kms_key_arn                    = var.kms_key_arn

  environment {
    variables = local.environment
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  tracing_config {
    mode = var.tracing_mode
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  tags = var.tags

  # Lambda checks at creation that the role may write to the dead-letter queue.
  depends_on = [aws_iam_role_policy.this]
}

resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = var.maximum_retry_attempts
  maximum_event_age_in_seconds = var.maximum_event_age_in_seconds
}

################################################################################
# EventBridge: lifecycle actions, launch/terminate results, command results, Spot
# warnings, reconcile schedule
################################################################################

resource "aws_cloudwatch_event_rule" "this" {
  for_each = local.event_rules

  name                = "${var.name}-${each.key}"
  description         = each.value.description
  event_pattern       = each.value.event_pattern
  schedule_expression = each.value.schedule_expression

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "this" {
  for_each = local.event_rules

  rule      = aws_cloudwatch_event_rule.this[each.key].name
  target_id = "reactor"
  arn       = aws_lambda_function.this.arn

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }

  retry_policy {
    maximum_event_age_in_seconds = var.maximum_event_age_in_seconds
    maximum_retry_attempts       = 185
  }
}

resource "aws_lambda_permission" "events" {
  for_each = local.event_rules

  statement_id  = "AllowEventBridge-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.this[each.key].arn
}

################################################################################
# Observability: alarms and a dashboard over the reactor's metrics (CloudWatch
# Embedded Metric Format lines in its log, namespace HaproxyAsg, dimension Function on
# every metric), the function's own metrics and the dead-letter queue
################################################################################

resource "aws_cloudwatch_metric_alarm" "dead_letter_queue" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "Events or invocations the reactor could not handle are waiting in ${local.dlq_name}: read them, fix the cause, then redrive or purge."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${var.name}-errors"
  alarm_description   = "The reactor Lambda failed (function error, timeout or crash): see ${local.log_group_name}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this.function_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "pending_action_age" {
  alarm_name        = "${var.name}-pending-action-age"
  alarm_description = "A lifecycle action has been pending for more than ${var.pending_action_alarm_s} s (an instance stuck in Pending:Wait or Terminating:Wait): see ${local.log_group_name}."
  namespace         = local.metric_namespace
  metric_name       = "PendingActionMaxAge"
  dimensions        = { Function = var.name }
  statistic         = "Maximum"
  # The reconcile writes the metric once per run: one period per reconcile.
  period              = local.reconcile_period_s
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.pending_action_alarm_s
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = var.tags
}

locals {
  alarm_actions = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]

  alarms = {
    dead_letter_queue  = aws_cloudwatch_metric_alarm.dead_letter_queue
    errors             = aws_cloudwatch_metric_alarm.errors
    pending_action_age = aws_cloudwatch_metric_alarm.pending_action_age
  }

  # Metrics with a second dimension whose values only the reactor knows (Kind: the event
  # kind) are shown with a SEARCH expression over that dimension.
  search = {
    for metric in ["Events", "InvocationDuration", "EventToDispatch"] :
    metric => "SEARCH('{${local.metric_namespace},Function,Kind} MetricName=\"${metric}\" Function=\"${var.name}\"', '${metric == "Events" ? "Sum" : "p99"}', 60)"
  }

  dashboard_widgets = [
    {
      title = "Events handled, by kind (Events)"
      stat  = "Sum"
      metrics = [
        [{ expression = local.search["Events"], id = "events", label = "" }],
      ]
    },
    {
      title   = "Lifecycle decisions (LifecycleDecisions)"
      stat    = "Sum"
      metrics = [for result in ["CONTINUE", "ABANDON", "WAIT"] : [local.metric_namespace, "LifecycleDecisions", "Function", var.name, "Result", result]]
    },
    {
      title   = "Hosts that failed a change (HostFailures)"
      stat    = "Sum"
      metrics = [[local.metric_namespace, "HostFailures", "Function", var.name]]
    },
    {
      title = "Invocation duration p99, by kind (InvocationDuration, ms)"
      stat  = "p99"
      metrics = [
        [{ expression = local.search["InvocationDuration"], id = "duration", label = "" }],
      ]
    },
    {
      title = "Event to dispatch p99, by kind (EventToDispatch, ms)"
      stat  = "p99"
      metrics = [
        [{ expression = local.search["EventToDispatch"], id = "dispatch", label = "" }],
      ]
    },
    {
      title   = "Pending lifecycle actions (PendingActions)"
      stat    = "Maximum"
      metrics = [[local.metric_namespace, "PendingActions", "Function", var.name]]
    },
    {
      title   = "Oldest pending lifecycle action (PendingActionMaxAge, s)"
      stat    = "Maximum"
      metrics = [[local.metric_namespace, "PendingActionMaxAge", "Function", var.name]]
      annotations = {
        horizontal = [{ label = "alarm", value = var.pending_action_alarm_s }]
      }
    },
    {
      title = "Lambda errors and throttles"
      stat  = "Sum"
      metrics = [
        ["AWS/Lambda", "Errors", "FunctionName", var.name],
        ["AWS/Lambda", "Throttles", "FunctionName", var.name],
      ]
    },
    {
      title = "Lambda duration (ms)"
      stat  = "Maximum"
      metrics = [
        ["AWS/Lambda", "Duration", "FunctionName", var.name, { stat = "Average" }],
        ["AWS/Lambda", "Duration", "FunctionName", var.name, { stat = "Maximum" }],
      ]
    },
    {
      title   = "Dead-letter queue depth"
      stat    = "Maximum"
      metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dlq_name]]
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      for index, widget in local.dashboard_widgets : {
        type   = "metric"
        x      = (index % 2) * 12
        y      = floor(index / 2) * 6
        width  = 12
        height = 6
        properties = merge(
          {
            title   = widget.title
            region  = local.region
            view    = "timeSeries"
            stacked = false
            period  = 60
            stat    = widget.stat
            metrics = widget.metrics
          },
          try({ annotations = widget.annotations }, {}),
        )
      }
    ]
  })
}
