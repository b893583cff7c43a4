# The example wired end to end, applied against a mocked AWS provider with the modules'
# test fixtures in place of the built artefacts.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-west-2a", "us-west-2b", "us-west-2c"] }
  }
  mock_data "aws_ami" {
    defaults = { id = "ami-0123456789abcdef0" }
  }
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
  mock_resource "aws_launch_template" {
    defaults = {
      id             = "lt-0123456789abcdef0"
      latest_version = 1
    }
  }
  mock_resource "aws_s3_bucket" {
    defaults = {
      id  = "demo-artifacts-0123"
      arn = "arn:aws:s3:::demo-artifacts-0123"
    }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/demo-0123" }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn       = "arn:aws:iam::123456789012:role/demo"
      unique_id = "AROA1234567890EXAMPLE"
    }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/net/demo/0123456789abcdef"
      dns_name = "demo-0123456789abcdef.elb.us-west-2.amazonaws.com"
      zone_id  = "Z18D5FSROUN65G"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/demo-80/0123456789abcdef" }
  }
  mock_resource "aws_sqs_queue" {
    defaults = {
      arn = "arn:aws:sqs:us-west-2:123456789012:demo-dlq"
      id  = "https://sqs.us-west-2.amazonaws.com/123456789012/demo-dlq"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = { arn = "arn:aws:lambda:us-west-2:123456789012:function:demo" }
  }
  mock_resource "aws_cloudwatch_event_rule" {
    defaults = { arn = "arn:aws:events:us-west-2:123456789012:rule/demo" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:us-west-2:123456789012:table/haproxy-asg-demo-reactor-ledger" }
  }
}

# The reactor's two queues and the two roles told apart.
override_resource {
  target = module.reactor.aws_sqs_queue.inbox
  values = {
    arn = "arn:aws:sqs:us-west-2:123456789012:haproxy-asg-demo-reactor-inbox"
    id  = "https://sqs.us-west-2.amazonaws.com/123456789012/haproxy-asg-demo-reactor-inbox"
  }
}

override_resource {
  target = module.proxy_fleet.aws_iam_role.instance
  values = {
    arn       = "arn:aws:iam::123456789012:role/haproxy-asg-demo-20260101000000000000000001"
    unique_id = "AROAPROXY0123456789"
  }
}

variables {
  reactor_zip_path  = "../../modules/reactor/tests/fixtures/reactor.zip"
  agent_binary_path = "../../modules/proxy-fleet/tests/fixtures/agent"
  # Not the checksums of a real package (the module's placeholders would fail its check
  # block, which terraform test counts as a failure; a plain plan only warns).
  ssm_agent_sha256 = {
    x86_64 = "1111111111111111111111111111111111111111111111111111111111111111"
    arm64  = "2222222222222222222222222222222222222222222222222222222222222222"
  }
}

run "wired" {
  command = apply

  assert {
    condition     = output.url == "http://demo-0123456789abcdef.elb.us-west-2.amazonaws.com/"
    error_message = "The URL must point at the load balancer."
  }
  assert {
    condition     = module.reactor.environment["PROXY_GROUP"] == module.proxy_fleet.autoscaling_group_name
    error_message = "The reactor must know the proxy fleet's group."
  }
  assert {
    condition = (
      module.reactor.environment["PROXY_TAG_KEY"] == module.proxy_fleet.proxy_tag_key &&
      module.reactor.environment["PROXY_TAG_VALUE"] == module.proxy_fleet.proxy_tag_value
    )
    error_message = "The reactor must target the proxies' tag."
  }
  assert {
    condition     = jsondecode(module.reactor.environment["POOLS"]) == { "haproxy-asg-demo-web" = [{ name = "web", port = 8080, ports = [] }] }
    error_message = "The reactor must manage the web app's group as pool web."
  }
  assert {
    condition     = strcontains(module.proxy_fleet.agent_config, "groups = { \"haproxy-asg-demo-web\" = [\"web\"] }")
    error_message = "agent sync on the proxies must know the same group and pool."
  }
  assert {
    condition     = toset([for hook in module.reactor.lifecycle_hooks : "${hook.group} ${hook.transition}"]) == toset(["haproxy-asg-demo-web autoscaling:EC2_INSTANCE_LAUNCHING", "haproxy-asg-demo-web autoscaling:EC2_INSTANCE_TERMINATING"])
    error_message = "The web app's group must carry both hooks."
  }
  assert {
    condition     = module.proxy_fleet.accept_proxy && module.proxy_fleet.listen_ports == [80]
    error_message = "The proxies must accept proxy protocol on port 80 behind the NLB."
  }

  # --- The control path: reports from the proxies to the reactor's inbox ------------
  assert {
    condition     = strcontains(module.proxy_fleet.agent_config, "[report]\nqueue_url = \"https://sqs.us-west-2.amazonaws.com/123456789012/haproxy-asg-demo-reactor-inbox\"\n")
    error_message = "The agents must report to the reactor's inbox (agent.toml [report] queue_url)."
  }
  assert {
    condition = (
      output.reactor_inbox_queue_url == "https://sqs.us-west-2.amazonaws.com/123456789012/haproxy-asg-demo-reactor-inbox" &&
      output.reactor_ledger_table_name == "haproxy-asg-demo-reactor-ledger"
    )
    error_message = "The example must output the reactor's inbox and ledger."
  }
  assert {
    condition = (
      module.reactor.environment["PROXY_ROLE_ID"] == "AROAPROXY0123456789" &&
      module.reactor.environment["PROXY_ROLE_ID"] == module.proxy_fleet.role_unique_id &&
      module.reactor.environment["LEDGER_TABLE"] == "haproxy-asg-demo-reactor-ledger"
    )
    error_message = "The reactor must know the proxies' role by its unique id (SenderId of their reports) and its ledger."
  }
  assert {
    condition     = module.proxy_fleet.role_arn == "arn:aws:iam::123456789012:role/haproxy-asg-demo-20260101000000000000000001"
    error_message = "The fleet must hand its role's ARN to the reactor (the inbox's queue policy)."
  }

  # --- Network: no public address on the proxies, AWS through VPC endpoints ---------
  assert {
    condition     = module.proxy_fleet.load_balancer_security_group_id != null
    error_message = "The NLB must have its own security group (the proxies accept only it)."
  }
  assert {
    condition     = toset([for endpoint in aws_vpc_endpoint.interface : endpoint.service_name]) == toset([for service in ["ssm", "ssmmessages", "ec2messages", "ec2", "autoscaling", "sqs"] : "com.amazonaws.us-west-2.${service}"])
    error_message = "SSM, its messages endpoints, EC2, Auto Scaling and SQS (the reports to the inbox) need interface endpoints."
  }
  assert {
    condition = alltrue([
      for endpoint in aws_vpc_endpoint.interface :
      endpoint.vpc_endpoint_type == "Interface" && endpoint.private_dns_enabled && endpoint.security_group_ids == toset([aws_security_group.endpoints.id]) && endpoint.subnet_ids == toset(aws_subnet.proxy[*].id)
    ])
    error_message = "The interface endpoints must sit in the proxy subnets with private DNS and their own security group."
  }
  assert {
    condition     = aws_vpc_endpoint.s3.vpc_endpoint_type == "Gateway" && aws_vpc_endpoint.s3.service_name == "com.amazonaws.us-west-2.s3" && aws_vpc_endpoint.s3.route_table_ids == toset([aws_route_table.proxy.id])
    error_message = "S3 (the agent and the SSM Agent package) must be reached through a gateway endpoint on the proxies' route table."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.endpoints_https.from_port == 443 && aws_vpc_security_group_ingress_rule.endpoints_https.to_port == 443 && aws_vpc_security_group_ingress_rule.endpoints_https.cidr_ipv4 == "10.0.0.0/16"
    error_message = "The endpoints accept HTTPS from the VPC only."
  }
  assert {
    condition     = [for route in aws_route_table.proxy.route : route.nat_gateway_id if route.cidr_block == "0.0.0.0/0"] == [aws_nat_gateway.this.id]
    error_message = "The proxy subnets reach Debian's mirrors through the NAT gateway, not an internet gateway."
  }
  assert {
    condition = (
      alltrue([for subnet in aws_subnet.proxy : subnet.map_public_ip_on_launch == false]) &&
      aws_route_table_association.proxy[*].subnet_id == aws_subnet.proxy[*].id &&
      alltrue([for route in aws_route_table.proxy.route : route.gateway_id == null || route.gateway_id == ""])
    )
    error_message = "The proxies' subnets hand out no public address and have no route to the internet gateway."
  }
  assert {
    condition     = length(aws_route_table.private.route) == 0
    error_message = "The web app's subnets keep the VPC's local route only."
  }

  # --- Backend: On-Demand, no warm pool by default; the reactor's rebalance --------
  assert {
    condition     = length(aws_autoscaling_group.web.warm_pool) == 0 && length(aws_autoscaling_group.web.mixed_instances_policy) == 0 && length(aws_autoscaling_group.web.launch_template) == 1
    error_message = "By default the web app runs On-Demand from its launch template, without a warm pool."
  }
  assert {
    condition     = module.reactor.environment["REBALANCE"] == "ignore"
    error_message = "The example must pass rebalance through to the reactor."
  }
  assert {
    condition     = output.reactor_dashboard_name == "haproxy-asg-demo-reactor"
    error_message = "The example must output the reactor's dashboard."
  }
}

run "warm_pool" {
  command = plan

  variables {
    backend_warm_pool = { min_size = 1, pool_state = "Stopped", reuse_on_scale_in = true }
    rebalance         = "drain"
  }

  assert {
    condition = (
      aws_autoscaling_group.web.warm_pool[0].min_size == 1 &&
      aws_autoscaling_group.web.warm_pool[0].pool_state == "Stopped" &&
      aws_autoscaling_group.web.warm_pool[0].instance_reuse_policy[0].reuse_on_scale_in == true
    )
    error_message = "backend_warm_pool must become the web app group's warm pool."
  }
  assert {
    condition     = module.reactor.environment["REBALANCE"] == "drain"
    error_message = "rebalance must reach the reactor."
  }
}

run "spot" {
  command = plan

  variables {
    backend_spot_instance_types = ["t3.micro", "t3a.micro"]
  }

  assert {
    condition = (
      length(aws_autoscaling_group.web.launch_template) == 0 &&
      aws_autoscaling_group.web.capacity_rebalance == true &&
      aws_autoscaling_group.web.mixed_instances_policy[0].instances_distribution[0].on_demand_percentage_above_base_capacity == 0 &&
      [for o in aws_autoscaling_group.web.mixed_instances_policy[0].launch_template[0].override : o.instance_type] == ["t3.micro", "t3a.micro"]
    )
    error_message = "backend_spot_instance_types must put the web app on Spot over those types, with capacity rebalancing."
  }
}

run "warm_pool_excludes_spot" {
  command = plan

  variables {
    backend_warm_pool           = { min_size = 1 }
    backend_spot_instance_types = ["t3.micro"]
  }

  expect_failures = [var.backend_warm_pool]
}

run "warm_pool_state_validated" {
  command = plan

  variables {
    backend_warm_pool = { pool_state = "Frozen" }
  }

  expect_failures = [var.backend_warm_pool]
}

