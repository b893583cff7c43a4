data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  account   = data.aws_caller_identity.current.account_id

  # The groups whose pools var.pools names: they get the lifecycle hooks.
  backend_groups = sort(keys(var.pools))
  # Every group the reactor may manage: the POOLS groups plus the names and `*` globs
  # of var.managed_groups (each with the pools its groups may feed: MANAGED_GROUPS).
  more_groups    = var.managed_groups == null ? {} : var.managed_groups
  managed_groups = sort(distinct(concat(local.backend_groups, keys(local.more_groups))))
  managed_env    = join(", ", [for group in sort(keys(local.more_groups)) : "${group} -> ${join(" ", local.more_groups[group])}"])
  managed_exact  = [for group in local.managed_groups : group if !strcontains(group, "*")]
  managed_globs  = [for group in local.managed_groups : group if strcontains(group, "*")]
  # EventBridge matches exact names as values and globs with a wildcard filter.
  managed_group_filter = concat(local.managed_exact, [for glob in local.managed_globs : { wildcard = glob }])
  # The proxy group's launch/terminate results matter too: they drive the Route 53 records.
  watched_group_filter = concat(
    sort(distinct(concat(local.managed_exact, [var.proxy_group_name]))),
    [for glob in local.managed_globs : { wildcard = glob }],
  )

  # POOLS: var.pools, an entry's weight only when it has one (an older reactor or agent
  # never sees the key unless it is used).
  pools_env = {
    for group, pools in var.pools : group => [
      for pool in pools : merge({ name = pool.name, port = pool.port, ports = pool.ports }, pool.weight == null ? {} : { weight = pool.weight })
    ]
  }

  # ARNs are built here rather than read from computed attributes so that the policy is
  # known at plan time (and testable with a mocked provider). IAM treats `*` in a
  # resource ARN as a wildcard, so the globs of var.managed_groups carry over.
  group_arns = [
    for group in local.managed_groups :
    "arn:${local.partition}:autoscaling:${local.region}:${local.account}:autoScalingGroup:*:autoScalingGroupName/${group}"
  ]
  # The proxy group's own lifecycle actions (where an operator puts one of
  # LIFECYCLE_HOOKS on it) are the reactor's to complete too: at once, records in step.
  # The groups whose members the proxies' health checks may mark Unhealthy (each one the
  # module manages: variables.tf checks it).
  health_group_arns = [
    for group in sort(distinct(var.proxy_health_groups)) :
    "arn:${local.partition}:autoscaling:${local.region}:${local.account}:autoScalingGroup:*:autoScalingGroupName/${group}"
  ]
  proxy_group_arn   = "arn:${local.partition}:autoscaling:${local.region}:${local.account}:autoScalingGroup:*:autoScalingGroupName/${var.proxy_group_name}"
  ssm_document_name = "${var.name}-agent"
  ssm_document_arn  = "arn:${local.partition}:ssm:${local.region}:${local.account}:document/${local.ssm_document_name}"
  instances_arn     = "arn:${local.partition}:ec2:${local.region}:${local.account}:instance/*"
  log_group_name    = "/aws/lambda/${var.name}"
  log_group_arn     = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.log_group_name}"
  dlq_name          = "${var.name}-dlq"
  dlq_arn           = "arn:${local.partition}:sqs:${local.region}:${local.account}:${local.dlq_name}"
  inbox_name        = "${var.name}-inbox"
  inbox_arn         = "arn:${local.partition}:sqs:${local.region}:${local.account}:${local.inbox_name}"
  ledger_name       = "${var.name}-ledger"
  ledger_arn        = "arn:${local.partition}:dynamodb:${local.region}:${local.account}:table/${local.ledger_name}"
  ledger_index      = "open"
  ledger_index_arn  = "${local.ledger_arn}/index/${local.ledger_index}"
  zone_arn          = var.dns == null ? null : "arn:${local.partition}:route53:::hostedzone/${var.dns.zone_id}"
  # Route 53 normalises record names to lower case without the trailing dot in its condition keys.
  dns_record_normalized = var.dns == null ? null : trimsuffix(lower(var.dns.record_name), ".")

  # The SSM document's timeoutSeconds: delivery only. The agent returns as soon as its
  # service accepted the change; health and drains are reported through the inbox.
  execution_timeout = 120
  # AWS: the source queue's visibility timeout at least six times the function's
  # timeout (room for Lambda's retries of a throttled batch), plus the batching window.
  inbox_visibility_timeout = 6 * var.timeout + var.inbox_batching_window_s
  # Receives of one message before the inbox redrives it to the dead-letter queue.
  inbox_max_receive_count = 5
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
    "EC2 Instance Detach Successful",
    "EC2 Instance Detach Unsuccessful",
  ]
  # Rebalance recommendations reach the reactor only when it drains on them: with
  # rebalance = "ignore" every one of the region's would be an invocation for nothing.
  spot_detail_types = concat(
    ["EC2 Spot Instance Interruption Warning"],
    var.rebalance == "drain" ? ["EC2 Instance Rebalance Recommendation"] : [],
  )

  event_rules = {
    lifecycle = {
      description = "Lifecycle actions (Pending:Wait, Terminating:Wait) of the managed groups and the proxy group"
      event_pattern = jsonencode({
        source        = ["aws.autoscaling"]
        "detail-type" = local.lifecycle_detail_types
        detail        = { AutoScalingGroupName = local.watched_group_filter }
      })
      schedule_expression = null
    }
    results = {
      description = "Launch/terminate/detach results of the managed groups and the proxy group"
      event_pattern = jsonencode({
        source        = ["aws.autoscaling"]
        "detail-type" = local.result_detail_types
        detail        = { AutoScalingGroupName = local.watched_group_filter }
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
      POOLS            = jsonencode(local.pools_env)
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
      MANAGED_GROUPS       = local.managed_env
      REBALANCE            = var.rebalance
      SPOT_DRAIN_TIMEOUT_S = tostring(var.spot_drain_timeout_s)
      # The lifecycle ledger, and who may report: the proxies' role (SQS SenderId
      # <PROXY_ROLE_ID>:<instance id>).
      LEDGER_TABLE          = aws_dynamodb_table.ledger.name
      LEDGER_TTL_S          = tostring(var.ledger_ttl_s)
      PROXY_ROLE_ID         = var.proxy_role_id
      HOST_REPORT_TIMEOUT_S = tostring(var.host_report_timeout_s)
      # Where the reactor sends itself reminders (delayed messages): a host silent past
      # HOST_REPORT_TIMEOUT_S is dropped from an action's quorum when one comes back.
      INBOX_QUEUE_URL = aws_sqs_queue.inbox.id
      # Zones in the changes, and the proxies' health checks acted on by Auto Scaling
      # (SetInstanceHealth) in the groups that opted in.
      MEMBER_ZONES           = tostring(var.member_zones)
      PROXY_HEALTH_GROUPS    = join(",", var.proxy_health_groups)
      UNHEALTHY_AFTER_S      = tostring(var.unhealthy_after_s)
      UNHEALTHY_QUORUM       = tostring(var.unhealthy_quorum)
      MAX_UNHEALTHY_FRACTION = tostring(var.max_unhealthy_fraction)
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

# templates/ssm-document.json.tftpl (docs/interfaces.md): two parameters, both
# restricted, so that nothing reaches the shell unvalidated. `Action` can only be one of
# two words and `Change` only base64 characters, so the single quotes of the script cannot
# be broken out of. The default Change "e30g" (base64 of "{} ") is the shortest value the
# pattern admits; `apply` rejects it (exit 2). The script returns as soon as the agent's
# service accepted the change (`sync --no-wait` too): timeoutSeconds is a fixed 120,
# delivery only. The template keeps it as its one template variable, which the Rust test
# harness substitutes with its own bound. jsondecode() fails the plan if the template is
# not JSON once rendered.
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
    resources = distinct(concat(local.group_arns, [local.proxy_group_arn]))
  }

  dynamic "statement" {
    # Proxy-detected health (proxy_health_groups): the reactor marks a member a quorum of
    # proxies saw DOWN Unhealthy, and Auto Scaling replaces it through the terminate hook.
    # Scoped as the lifecycle actions are, by group ARN, to the groups that opted in.
    for_each = length(var.proxy_health_groups) == 0 ? [] : [1]
    content {
      sid       = "InstanceHealth"
      effect    = "Allow"
      actions   = ["autoscaling:SetInstanceHealth"]
      resources = local.health_group_arns
    }
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
      "ec2:DescribeTags",
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
    # The event source mapping polls the inbox with the function's role.
    sid       = "Inbox"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [local.inbox_arn]
  }

  statement {
    # The reactor's reminders to itself: delayed messages to its own inbox.
    sid       = "Reminders"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [local.inbox_arn]
  }

  statement {
    # The lifecycle ledger: conditional writes and transactions (TransactWriteItems is
    # authorised through the PutItem, UpdateItem and ConditionCheckItem it holds).
    sid       = "Ledger"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem"]
    resources = [local.ledger_arn]
  }

  statement {
    # The undecided items: a Query on the sparse index `open`.
    sid       = "LedgerOpen"
    effect    = "Allow"
    actions   = ["dynamodb:Query"]
    resources = [local.ledger_index_arn]
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
# Dead-letter queue: inbox messages received 5 times without success (redrive) and
# events EventBridge could not deliver to the inbox
################################################################################

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn

  tags = var.tags
}

# The inbox's redrive needs no statement here (SQS moves the messages itself); the
# EventBridge targets send their undeliverable events with the rules' own identity.
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
# Inbox: every event rule's target and the proxies' host reports; the reactor's
# input through its event source mapping
################################################################################

resource "aws_sqs_queue" "inbox" {
  name                       = local.inbox_name
  visibility_timeout_seconds = local.inbox_visibility_timeout
  # Four days (SQS's default); the dead-letter queue keeps 14, longer than any message
  # can spend here first (its age carries over when it is redriven).
  message_retention_seconds = 345600
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = local.inbox_max_receive_count
  })

  tags = var.tags
}

# Who may send: the module's EventBridge rules (by aws:SourceArn) and the proxies' role
# (any of its sessions: each proxy's instance profile). The reactor tells reports from
# events by the sender SQS records (SenderId): a report must come from
# <proxy_role_id>:<its instance id>, an event never from a proxy. No explicit deny of
# other senders: principals of the account that IAM allows sqs:SendMessage (an
# operator's redrive from the dead-letter queue) keep working; what they send is judged
# by its SenderId like the rest.
data "aws_iam_policy_document" "inbox" {
  statement {
    sid       = "EventBridgeRules"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [local.inbox_arn]

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
    sid       = "ProxyReports"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [local.inbox_arn]

    principals {
      type        = "AWS"
      identifiers = [var.proxy_role_arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [local.inbox_arn]

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

resource "aws_sqs_queue_policy" "inbox" {
  queue_url = aws_sqs_queue.inbox.id
  policy    = data.aws_iam_policy_document.inbox.json
}

################################################################################
# Lifecycle ledger: one item per lifecycle action (<instance id>#<launch|terminate>),
# undecided ones in the sparse index `open`, decided ones expired by TTL
################################################################################

resource "aws_dynamodb_table" "ledger" {
  #checkov:skip=CKV_AWS_119:A customer-managed key is optional (var.kms_key_arn); without one the table is encrypted with DynamoDB's AWS managed key. The ledger holds instance ids and decisions, no secrets.
  name         = local.ledger_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"

  attribute {
    name = "id"
    type = "S"
  }

  attribute {
    name = local.ledger_index
    type = "S"
  }

  # Only undecided items carry `open`: the index holds them and nothing else.
  global_secondary_index {
    name            = local.ledger_index
    hash_key        = local.ledger_index
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = var.tags
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
  #checkov:skip=CKV_AWS_117:The reactor only calls AWS APIs (Auto Scaling, EC2, SSM, DynamoDB, SQS, Route 53); a VPC would add NAT or endpoints and no protection.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the operator owns; the zip is built from this repository by scripts/build-artifacts.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (group names, tag, document, table and role ids); a customer-managed key is optional through var.kms_key_arn.
  #checkov:skip=CKV_AWS_116:No asynchronous invocation: the inbox's event source mapping invokes the function synchronously (messages that keep failing are redriven to the dead-letter queue after 5 receives), operators invoke it directly.
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

  tracing_config {
    mode = var.tracing_mode
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  tags = var.tags
}

# The inbox -> the reactor: batches of up to inbox_batch_size messages; the reactor
# answers the messages it could not handle (batchItemFailures), which return to the
# inbox, and after 5 receives go to the dead-letter queue.
resource "aws_lambda_event_source_mapping" "inbox" {
  event_source_arn                   = aws_sqs_queue.inbox.arn
  function_name                      = aws_lambda_function.this.arn
  batch_size                         = var.inbox_batch_size
  maximum_batching_window_in_seconds = var.inbox_batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.inbox_max_concurrency
  }

  # Lambda checks at creation that the function's role may receive from the queue.
  depends_on = [aws_iam_role_policy.this]
}

################################################################################
# EventBridge: lifecycle actions, launch/terminate/detach results, Spot warnings,
# reconcile schedule; every rule delivers to the inbox
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

  rule = aws_cloudwatch_event_rule.this[each.key].name
  # Same id as when the rules targeted the function: the target is updated in place.
  target_id = "reactor"
  arn       = aws_sqs_queue.inbox.arn

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }

  retry_policy {
    maximum_event_age_in_seconds = var.maximum_event_age_in_seconds
    maximum_retry_attempts       = 185
  }
}

################################################################################
# Observability: alarms and a dashboard over the reactor's metrics (CloudWatch
# Embedded Metric Format lines in its log, namespace HaproxyAsg, dimension Function on
# every metric), the function's own metrics, the inbox and the dead-letter queue
################################################################################

resource "aws_cloudwatch_metric_alarm" "dead_letter_queue" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "Messages the reactor could not handle (inbox messages received ${local.inbox_max_receive_count} times, events EventBridge could not deliver) are waiting in ${local.dlq_name}: read them, fix the cause, then redrive them to ${local.inbox_name} or purge."
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

resource "aws_cloudwatch_metric_alarm" "hosts_dropped" {
  alarm_name          = "${var.name}-hosts-dropped"
  alarm_description   = "A proxy stayed silent for host_report_timeout_s (${var.host_report_timeout_s} s) while the others reported, and was dropped from a change's quorum: see ${local.log_group_name} for the host, and check its agent service and its way to ${local.inbox_name}."
  namespace           = local.metric_namespace
  metric_name         = "HostsDropped"
  dimensions          = { Function = var.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "inbox_age" {
  alarm_name          = "${var.name}-inbox-age"
  alarm_description   = "The oldest message of ${local.inbox_name} is older than ${var.inbox_age_alarm_s} s: events and host reports are not reaching the reactor (event source mapping disabled, throttling, failing invocations). See ${local.log_group_name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.inbox.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.inbox_age_alarm_s
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
    hosts_dropped      = aws_cloudwatch_metric_alarm.hosts_dropped
    inbox_age          = aws_cloudwatch_metric_alarm.inbox_age
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
      title   = "Hosts dropped from a change's quorum, silent for host_report_timeout_s (HostsDropped)"
      stat    = "Sum"
      metrics = [[local.metric_namespace, "HostsDropped", "Function", var.name]]
    },
    {
      title = "Host reports applied and refused as forged (ReportsApplied, ForgedReports)"
      stat  = "Sum"
      metrics = [
        [local.metric_namespace, "ReportsApplied", "Function", var.name],
        [local.metric_namespace, "ForgedReports", "Function", var.name],
      ]
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
      title = "Inbox depth (visible, in flight)"
      stat  = "Maximum"
      metrics = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.inbox_name],
        ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", local.inbox_name],
      ]
    },
    {
      title   = "Oldest inbox message (ApproximateAgeOfOldestMessage, s)"
      stat    = "Maximum"
      metrics = [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.inbox_name]]
      annotations = {
        horizontal = [{ label = "alarm", value = var.inbox_age_alarm_s }]
      }
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

# Who may write haproxy:interrupted: the reactor only. IAM within an account only allows,
# so this deny is offered as a service control policy (output) for the operator to attach
# in AWS Organizations; the module cannot attach it itself. Built with jsonencode so that
# it is known at plan time.
locals {
  interrupted_tag_guard = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "OnlyTheReactorMarksInterruptions"
      Effect   = "Deny"
      Action   = ["ec2:CreateTags", "ec2:DeleteTags"]
      Resource = "arn:${local.partition}:ec2:*:*:instance/*"
      Condition = {
        "ForAnyValue:StringEquals" = { "aws:TagKeys" = local.interrupted_tag_key }
        ArnNotLike                 = { "aws:PrincipalArn" = "arn:${local.partition}:iam::${local.account}:role/${var.name}" }
      }
    }]
  })
}
