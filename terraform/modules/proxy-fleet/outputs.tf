output "autoscaling_group_name" {
  description = "Name of the proxies' Auto Scaling group (the reactor's proxy_group_name / PROXY_GROUP)."
  value       = aws_autoscaling_group.this.name
}

output "autoscaling_group_arn" {
  description = "ARN of the proxies' Auto Scaling group."
  value       = aws_autoscaling_group.this.arn
}

output "proxy_tag_key" {
  description = "Key of the tag every proxy carries (the reactor's proxy_tag_key / PROXY_TAG_KEY)."
  value       = var.proxy_tag_key
}

output "proxy_tag_value" {
  description = "Value of the proxy tag (the reactor's proxy_tag_value / PROXY_TAG_VALUE)."
  value       = local.proxy_tag_value
}

output "security_group_id" {
  description = "Security group of the proxies: allow it to the backends' ports."
  value       = aws_security_group.proxy.id
}

output "load_balancer_security_group_id" {
  description = "Security group of the load balancer (NLB or classic ELB): the only source the proxies accept on their bind ports. Null with load_balancer_type = none."
  value       = local.lb_security_group_id
}

output "launch_template_id" {
  description = "ID of the proxies' launch template."
  value       = aws_launch_template.this.id
}

output "instance_role_name" {
  description = "Name of the proxies' IAM role."
  value       = aws_iam_role.instance.name
}

output "role_arn" {
  description = "ARN of the proxies' IAM role (the reactor's proxy_role_arn: the inbox's queue policy lets its sessions send reports)."
  value       = aws_iam_role.instance.arn
}

output "role_unique_id" {
  description = "Unique id (AROA...) of the proxies' IAM role (the reactor's proxy_role_id): SQS names a report's sender <role_unique_id>:<instance id>."
  value       = aws_iam_role.instance.unique_id
}

output "artifact_bucket" {
  description = "Bucket holding the agent binary."
  value       = aws_s3_bucket.artifacts.id
}

output "agent_object_key" {
  description = "Key of the agent binary in the artefact bucket (content-addressed by its SHA-256)."
  value       = aws_s3_object.agent.key
}

output "agent_config" {
  description = "The rendered /etc/haproxy-asg/agent.toml but for its top: at boot the user data writes host = \"<instance id>\" and zone = \"<availability zone>\" (read from IMDSv2) above it."
  value       = local.agent_toml
}

output "user_data" {
  description = "The rendered user data of the proxies (shell script)."
  value       = local.user_data
}

output "accept_proxy" {
  description = "Whether HAProxy binds with accept-proxy (behind a load balancer with proxy protocol)."
  value       = local.accept_proxy
}

output "load_balancer_arn" {
  description = "ARN of the NLB (null with a classic ELB or none)."
  value       = one(aws_lb.this[*].arn)
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer (NLB or classic ELB); null without one."
  value       = local.lb_dns_name
}

output "load_balancer_zone_id" {
  description = "Hosted zone of the load balancer's DNS name (for alias records); null without one."
  value       = local.lb_zone_id
}

output "target_group_arns" {
  description = "NLB target groups, keyed by listener port."
  value       = { for port, tg in aws_lb_target_group.this : port => tg.arn }
}

output "listen_ports" {
  description = "The pools' bind ports (one load balancer listener each)."
  value       = local.listen_ports
}

output "dns_name" {
  description = "The alias record to the load balancer (FQDN), when dns_zone_id and dns_record_name are set."
  value       = one(aws_route53_record.alias[*].fqdn)
}

output "reactor_dns" {
  description = "With load_balancer_type = none and DNS set: the per-proxy multi-value A records for the reactor to maintain (pass as its `dns` variable). Null otherwise."
  value = var.load_balancer_type == "none" && var.dns_zone_id != null && var.dns_record_name != null ? {
    zone_id     = var.dns_zone_id
    record_name = var.dns_record_name
    ttl         = var.dns_ttl
  } : null
}
