output "function_name" {
  description = "Name of the reactor Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the reactor Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_name" {
  description = "Name of the reactor's IAM role."
  value       = aws_iam_role.this.name
}

output "role_arn" {
  description = "ARN of the reactor's IAM role."
  value       = aws_iam_role.this.arn
}

output "ssm_document_name" {
  description = "Name of the SSM Command document that runs the agent on the proxies (SSM_DOCUMENT)."
  value       = aws_ssm_document.agent.name
}

output "ssm_document_arn" {
  description = "ARN of the SSM Command document."
  value       = local.ssm_document_arn
}

output "inbox_queue_url" {
  description = "URL of the inbox, the SQS queue every event rule and the proxies' host reports deliver to (the proxy-fleet module's report_queue_url)."
  value       = aws_sqs_queue.inbox.id
}

output "inbox_queue_arn" {
  description = "ARN of the inbox (the proxy-fleet module's report_queue_arn: its role may send there)."
  value       = aws_sqs_queue.inbox.arn
}

output "ledger_table_name" {
  description = "Name of the lifecycle ledger, the DynamoDB table the reactor keeps its lifecycle actions in (LEDGER_TABLE)."
  value       = aws_dynamodb_table.ledger.name
}

output "ledger_table_arn" {
  description = "ARN of the lifecycle ledger table."
  value       = aws_dynamodb_table.ledger.arn
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue: inbox messages received 5 times without success and events EventBridge could not deliver land here."
  value       = aws_sqs_queue.dlq.arn
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.id
}

output "log_group_name" {
  description = "CloudWatch log group of the reactor."
  value       = aws_cloudwatch_log_group.this.name
}

output "lifecycle_hooks" {
  description = "Lifecycle hooks created, keyed \"<group>/<launch|terminate>\": group, hook name and transition."
  value = {
    for key, hook in aws_autoscaling_lifecycle_hook.this :
    key => { group = hook.autoscaling_group_name, name = hook.name, transition = hook.lifecycle_transition }
  }
}

output "event_rule_arns" {
  description = "ARNs of the EventBridge rules, keyed lifecycle, results, spot and reconcile."
  value       = { for key, rule in aws_cloudwatch_event_rule.this : key => rule.arn }
}

output "environment" {
  description = "The reactor's environment variables (docs/interfaces.md)."
  value       = local.environment
}

output "event_patterns" {
  description = "Event patterns of the lifecycle, results and spot rules (JSON), keyed like event_rule_arns."
  value       = { for key, rule in aws_cloudwatch_event_rule.this : key => rule.event_pattern if rule.event_pattern != null }
}

output "managed_groups" {
  description = "The groups (names and `*` globs) the reactor may manage: the groups of pools and the keys of managed_groups, sorted."
  value       = local.managed_groups
}

output "ssm_execution_timeout" {
  description = "timeoutSeconds of the SSM document's step: a fixed 120 (delivery only: the agent returns once its service accepted the change)."
  value       = local.execution_timeout
}

output "alarm_names" {
  description = "Names of the CloudWatch alarms, keyed dead_letter_queue, errors, pending_action_age, hosts_dropped and inbox_age."
  value       = { for key, alarm in local.alarms : key => alarm.alarm_name }
}

output "alarm_arns" {
  description = "ARNs of the CloudWatch alarms, keyed like alarm_names."
  value       = { for key, alarm in local.alarms : key => alarm.arn }
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard of the reactor's metrics."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "group_pools" {
  description = "The group -> pools map the reactor uses (POOLS: each group's pools with their port, the ports a tag may choose and their weight, null when unset). Give it to the proxy-fleet module (reactor_group_pools): its agents then map the same groups to the same pools and ports, and a plan fails where the two differ."
  value = {
    for group, pools in var.pools : group => [for pool in pools : { name = pool.name, port = pool.port, ports = pool.ports, weight = pool.weight }]
  }
}

output "interrupted_tag_guard_policy" {
  description = "A service control policy (JSON) that denies writing or removing the haproxy:interrupted instance tag to every principal but the reactor's role. Attach it in AWS Organizations where you can: a module inside one account cannot deny other principals (IAM only allows), so without it anyone allowed ec2:CreateTags on instances can write the tag, which the reactor and the agents then believe only on a Spot instance that is no longer launching, with a deadline within 10 minutes before to 2 minutes after the read."
  value       = local.interrupted_tag_guard
}
