output "url" {
  description = "Where the demo answers (through the load balancer and HAProxy)."
  value       = "http://${coalesce(module.proxy_fleet.dns_name, module.proxy_fleet.load_balancer_dns_name)}/"
}

output "backend_group_name" {
  description = "The web app's Auto Scaling group: scale it and watch HAProxy follow."
  value       = aws_autoscaling_group.web.name
}

output "proxy_group_name" {
  description = "The HAProxy fleet's Auto Scaling group."
  value       = module.proxy_fleet.autoscaling_group_name
}

output "reactor_function_name" {
  description = "The reactor Lambda function (logs in /aws/lambda/<name>)."
  value       = module.reactor.function_name
}

output "reactor_inbox_queue_url" {
  description = "The reactor's inbox: its event rules and the proxies' reports deliver here (the Lambda reads it)."
  value       = module.reactor.inbox_queue_url
}

output "reactor_ledger_table_name" {
  description = "The reactor's lifecycle ledger (DynamoDB): one item per lifecycle action, the undecided ones in the index open."
  value       = module.reactor.ledger_table_name
}

output "reactor_dead_letter_queue_url" {
  description = "Events the reactor failed to handle end up here."
  value       = module.reactor.dead_letter_queue_url
}

output "ssm_document_name" {
  description = "The SSM document that runs the agent: `aws ssm send-command --document-name <it> --targets Key=tag:<proxy tag>,Values=<value> --parameters Action=sync`."
  value       = module.reactor.ssm_document_name
}

output "reactor_dashboard_name" {
  description = "CloudWatch dashboard of the reactor's metrics."
  value       = module.reactor.dashboard_name
}

output "reactor_alarm_names" {
  description = "The reactor's CloudWatch alarms (dead letters, errors, pending lifecycle actions, hosts dropped, inbox age)."
  value       = module.reactor.alarm_names
}
