data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  account   = data.aws_caller_identity.current.account_id

  backend_groups = sort(keys(var.pools))
  # The proxy group's launch/terminate results matter too: they drive the Route 53 records.
  watched_groups = sort(distinct(concat(local.backend_groups, [var.proxy_group_name])))

  # ARNs are built here rather than read from computed attributes so that the policy is
  # known at plan time (and testable with a mocked provider).
  group_arns = [
    for group in local.backend_groups :
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

  event_rules = {
    lifecycle = {
      description = "Lifecycle actions (Pending:Wait, Terminating:Wait) of the backend groups"
      event_pattern = jsonencode({
        source        = ["aws.autoscaling"]
        "detail-type" = local.lifecycle_detail_types
        detail        = { AutoScalingGroupName = local.backend_groups }
      })
      schedule_expression = null
    }
    results = {
      description = "Launch/terminate results of the backend groups and the proxy group"
      event_pattern = jsonencode({
        source        = ["aws.autoscaling"]
        "detail-type" = local.result_detail_types
        detail        = { AutoScalingGroupName = local.watched_groups }
      })
      schedule_expression = null
    }
    reconcile = {
      description         = "Periodic reconcile: repairs whatever a lost or reordered event left behind"
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
    },
    var.dns == null ? {} : {
      DNS_ZONE_ID     = var.dns.zone_id
      DNS_RECORD_NAME = var.dns.record_name
      DNS_TTL         = tostring(var.dns.ttl)
    },
  )

  # SSM Command document (docs/interfaces.md): two parameters, both restricted, so that
  # nothing reaches the shell unvalidated. `Action` can only be one of two words and
  # `Change` only base64 characters, so the single quotes below cannot be broken out of.
  ssm_document = {
    schemaVersion = "2.2"
    description   = "haproxy-asg: apply a change to (or sync) this host's HAProxy through the agent."
    parameters = {
      Action = {
        type          = "String"
        description   = "apply: apply the Change; sync: converge with the Auto Scaling groups (Change is ignored)."
        allowedValues = ["apply", "sync"]
        default       = "apply"
      }
      Change = {
        type           = "String"
        description    = "Base64 of the change JSON (infra::Change). Ignored by sync."
        allowedPattern = "^[A-Za-z0-9+/]{4,}={0,2}$"
        # base64 of "{} ": the shortest value the pattern admits; `apply` rejects it (exit 2).
        default = "e30g"
      }
    }
    mainSteps = [
      {
        action = "aws:runShellScript"
        name   = "agent"
        precondition = {
          StringEquals = ["platformType", "Linux"]
        }
        inputs = {
          timeoutSeconds = tostring(var.timeout)
          runCommand = [
            "set -eu",
            "case '{{ Action }}' in",
            "  apply) printf '%s' '{{ Change }}' | base64 -d | /usr/local/bin/agent apply --json --file - ;;",
            "  sync) /usr/local/bin/agent sync --json ;;",
            "esac",
          ]
        }
      },
    ]
  }

  policy_statements = concat(
    [
      {
        Sid      = "Logs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${local.log_group_arn}:*"]
      },
      {
        Sid      = "LifecycleActions"
        Effect   = "Allow"
        Action   = ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
        Resource = local.group_arns
      },
      {
        # Read-only discovery: these actions support no resource-level permission.
        Sid      = "Discovery"
        Effect   = "Allow"
        Action   = ["autoscaling:Describe*", "ec2:DescribeInstances"]
        Resource = ["*"]
      },
      {
        Sid      = "SendCommandDocument"
        Effect   = "Allow"
        Action   = ["ssm:SendCommand"]
        Resource = [local.ssm_document_arn]
      },
      {
        Sid      = "SendCommandProxies"
        Effect   = "Allow"
        Action   = ["ssm:SendCommand"]
        Resource = [local.instances_arn]
        Condition = {
          StringEquals = { "ssm:resourceTag/${var.proxy_tag_key}" = [var.proxy_tag_value] }
        }
      },
      {
        # Command results: these actions support no resource-level permission.
        Sid      = "CommandResults"
        Effect   = "Allow"
        Action   = ["ssm:GetCommandInvocation", "ssm:ListCommandInvocations"]
        Resource = ["*"]
      },
      {
        Sid      = "DeadLetterQueue"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage"]
        Resource = [local.dlq_arn]
      },
    ],
    [for statement in [
      {
        Sid      = "DnsRecords"
        Effect   = "Allow"
        Action   = ["route53:ChangeResourceRecordSets"]
        Resource = [local.zone_arn]
        Condition = {
          "ForAllValues:StringEquals" = {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames" = [local.dns_record_normalized]
            "route53:ChangeResourceRecordSetsRecordTypes"           = ["A"]
          }
        }
      },
      {
        Sid      = "DnsRead"
        Effect   = "Allow"
        Action   = ["route53:ListResourceRecordSets"]
        Resource = [local.zone_arn]
      },
    ] : statement if var.dns != null],
    [for statement in [
      {
        Sid      = "Kms"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [var.kms_key_arn]
      },
    ] : statement if var.kms_key_arn != null],
    [for statement in [
      {
        # X-Ray write actions support no resource-level permission.
        Sid      = "Tracing"
        Effect   = "Allow"
        Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
        Resource = ["*"]
      },
    ] : statement if var.tracing_mode == "Active"],
  )
}

################################################################################
# SSM Command document run on the proxies
################################################################################

resource "aws_ssm_document" "agent" {
  name            = local.ssm_document_name
  document_type   = "Command"
  document_format = "JSON"
  target_type     = "/AWS::EC2::Instance"
  content         = jsonencode(local.ssm_document)

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

resource "aws_iam_role" "this" {
  name        = var.name
  description = "haproxy-asg reactor Lambda"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Principal = { Service = "lambda.amazonaws.com" }
        Action    = "sts:AssumeRole"
      },
    ]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "this" {
  name = "reactor"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.policy_statements
  })
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

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EventBridgeDeadLetters"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = local.dlq_arn
        Condition = {
          ArnEquals = { "aws:SourceArn" = [for rule in aws_cloudwatch_event_rule.this : rule.arn] }
        }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:*"
        Resource  = local.dlq_arn
        Condition = {
          Bool = { "aws:SecureTransport" = "false" }
        }
      },
    ]
  })
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

  lifecycle {
    precondition {
      condition     = var.timeout >= max(var.health_timeout_s, var.drain_timeout_s) + 30
      error_message = "timeout must exceed max(health_timeout_s, drain_timeout_s) by at least 30 seconds."
    }
  }
}

resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = var.maximum_retry_attempts
  maximum_event_age_in_seconds = var.maximum_event_age_in_seconds
}

################################################################################
# EventBridge: lifecycle actions, launch/terminate results, reconcile schedule
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
