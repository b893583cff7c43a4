data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_ami" "debian" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  owners      = ["136693071363"] # Debian

  filter {
    name   = "name"
    values = ["debian-12-${local.deb_arch}-*"]
  }

  filter {
    name   = "architecture"
    values = [var.architecture]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  deb_arch        = var.architecture == "arm64" ? "arm64" : "amd64"
  ami_id          = var.ami_id != null ? var.ami_id : data.aws_ami.debian[0].id
  proxy_tag_value = coalesce(var.proxy_tag_value, var.name)
  lb_subnet_ids   = coalesce(var.lb_subnet_ids, var.subnet_ids)

  # One listener / target group per pool bind port.
  listen_ports = [for pool in var.pools : tonumber(regex(":([0-9]+)$", pool.bind)[0])] # pool order
  port_keys    = toset([for port in local.listen_ports : tostring(port)])

  # Behind a load balancer that speaks proxy protocol, HAProxy must bind with accept-proxy.
  accept_proxy = var.load_balancer_type != "none"

  # One map: the reactor's (reactor_group_pools) when given, unless groups says it again.
  reactor_groups = var.reactor_group_pools == null ? {} : {
    for group, pools in var.reactor_group_pools : group => [for pool in pools : pool.name]
  }
  groups = length(var.groups) == 0 ? local.reactor_groups : var.groups
  # [aws] weights: group_weights, else the reactor's where a group's pools there all carry
  # one weight (the agents' table has one per group).
  reactor_weight_sets = var.reactor_group_pools == null ? {} : {
    for group, pools in var.reactor_group_pools : group => distinct([for pool in pools : pool.weight])
  }
  reactor_weights = {
    for group, set in local.reactor_weight_sets : group => set[0] if length(set) == 1 && set[0] != null
  }
  weights = length(var.group_weights) == 0 ? local.reactor_weights : var.group_weights
  # Where the agents' map differs from the reactor's (empty when it agrees or is unknown).
  map_differences = var.reactor_group_pools == null ? [] : concat(
    [
      for group in sort(distinct(concat(keys(local.groups), keys(local.reactor_groups)))) :
      "group ${group}: agents ${jsonencode(sort(try(local.groups[group], tolist([]))))}, reactor ${jsonencode(sort(try(local.reactor_groups[group], tolist([]))))}"
      if toset(try(local.groups[group], tolist([]))) != toset(try(local.reactor_groups[group], tolist([])))
    ],
    flatten([
      for group, pools in var.reactor_group_pools : [
        for pool in pools : [
          for mine in var.pools : "pool ${pool.name}: agents port ${mine.port} ports ${jsonencode(sort(mine.ports))}, reactor port ${pool.port} ports ${jsonencode(sort(pool.ports))}"
          if mine.name == pool.name && (mine.port != pool.port || toset(mine.ports) != toset(pool.ports))
        ]
      ]
    ]),
    [
      for group, set in local.reactor_weight_sets :
      length(set) == 1 ? "group ${group}: agents weight ${try(tostring(local.weights[group]), "none")}, reactor weight ${set[0] == null ? "none" : tostring(set[0])}" : "group ${group}: the reactor gives its pools different weights (${join(", ", [for w in set : w == null ? "none" : tostring(w)])}), which [aws] weights (one per group) cannot say"
      if length(set) != 1 || try(local.weights[group], null) != set[0]
    ],
  )

  agent_toml = templatefile("${path.module}/templates/agent.toml.tftpl", {
    accept_proxy    = local.accept_proxy
    pools           = var.pools
    groups          = local.groups
    weights         = local.weights
    sync_interval_s = var.sync_interval_s
    member_networks = coalesce(var.member_networks, var.backend_cidr_blocks)
    metrics_haproxy = var.metrics_haproxy
    metrics_agent   = var.metrics_agent
    report_queue    = var.report_queue_url
  })

  # The HAProxy the proxies install (var.haproxy): Debian 12's own package is 2.6.
  haproxy_version = coalesce(var.haproxy.version, "2.6")
  # A package in S3 (haproxy.url = s3://bucket/key): the proxies' role may read that object.
  haproxy_s3_object = startswith(coalesce(var.haproxy.url, "-"), "s3://") ? trimprefix(var.haproxy.url, "s3://") : null

  # Content-addressed: a new build is a new object (and a new launch template version).
  agent_sha256 = filesha256(var.agent_binary_path)
  agent_key    = "agent/${local.agent_sha256}/agent"

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    region       = local.region
    deb_arch     = local.deb_arch
    agent_bucket = aws_s3_bucket.artifacts.id
    agent_key    = local.agent_key
    agent_sha256 = local.agent_sha256
    agent_toml   = trimspace(local.agent_toml)
    # The SSM Agent package, pinned and checked (a mismatch stops the provisioning).
    ssm_agent_version = var.ssm_agent_version
    ssm_agent_sha256  = lookup(var.ssm_agent_sha256, var.architecture, "")
    # The HAProxy to install, then check (var.haproxy; "" where the source has none).
    haproxy_source          = var.haproxy.source
    haproxy_version         = local.haproxy_version
    haproxy_url             = var.haproxy.url == null ? "" : var.haproxy.url
    haproxy_sha256          = var.haproxy.sha256 == null ? "" : var.haproxy.sha256
    haproxy_key_fingerprint = var.haproxy.key_fingerprint
  })

  instance_tags = merge(var.tags, {
    Name                = var.name
    (var.proxy_tag_key) = local.proxy_tag_value
  })

  # The load balancer's security group (NLB or classic ELB): the only source the
  # proxies accept on their bind ports when there is a load balancer.
  lb_security_group_id = one(aws_security_group.lb[*].id)

  lb_dns_name = one(concat(aws_lb.this[*].dns_name, aws_elb.this[*].dns_name))
  lb_zone_id  = one(concat(aws_lb.this[*].zone_id, aws_elb.this[*].zone_id))
}


################################################################################
# Artefact bucket: the agent binary
################################################################################

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_18:Holds one build artefact written by Terraform; reads are by the proxies' role only. Enable CloudTrail data events for an audit trail.
  #checkov:skip=CKV_AWS_144:The artefact is rebuilt and re-uploaded by scripts/build-artifacts and terraform apply; cross-region replication adds nothing.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to uploads: the launch template references the object by its content hash.
  #checkov:skip=CKV_AWS_145:Encrypted with SSE-S3 by default; a customer-managed key is optional through var.kms_key_arn.
  bucket_prefix = "${lower(var.name)}-artifacts-"
  force_destroy = true

  tags = var.tags
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-old-builds"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "artifacts" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

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

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

resource "aws_s3_object" "agent" {
  bucket      = aws_s3_bucket.artifacts.id
  key         = local.agent_key
  source      = var.agent_binary_path
  source_hash = local.agent_sha256
  kms_key_id  = var.kms_key_arn

  tags = var.tags

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.artifacts]
}

################################################################################
# Instance profile
################################################################################

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "Ec2"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name_prefix        = "${var.name}-"
  description        = "haproxy-asg proxies: SSM, the agent binary, read-only group discovery for agent sync, reports to the reactor's inbox"
  assume_role_policy = data.aws_iam_policy_document.assume_role.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "instance" {
  statement {
    sid       = "AgentBinary"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.agent_key}"]
  }

  statement {
    # `agent sync` reads the groups' members; these actions support no resource-level permission.
    sid       = "Discovery"
    effect    = "Allow"
    actions   = ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"]
    resources = ["*"]
  }

  statement {
    # The agent service's reports (each member's outcome) to the reactor's inbox, whose
    # queue policy lets this role's sessions in; SQS records the sender as
    # <role unique id>:<instance id>, which the reactor checks.
    sid       = "Reports"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [var.report_queue_arn]
  }

  statement {
    # AmazonSSMManagedInstanceCore allows reading every Parameter Store parameter of the
    # account; the proxies need none, and an explicit deny wins over that allow.
    sid       = "DenyParameterStore"
    effect    = "Deny"
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]
    resources = ["*"]
  }

  dynamic "statement" {
    # haproxy.source = "deb" with an s3:// URL: that package object only.
    for_each = local.haproxy_s3_object == null ? [] : [local.haproxy_s3_object]
    content {
      sid       = "HaproxyPackage"
      effect    = "Allow"
      actions   = ["s3:GetObject"]
      resources = ["arn:${local.partition}:s3:::${statement.value}"]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "Kms"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "instance" {
  name   = "haproxy-asg-proxy"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.instance.json
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.instance.name

  tags = var.tags
}

################################################################################
# Security groups
################################################################################

resource "aws_security_group" "proxy" {
  name_prefix = "${var.name}-proxy-"
  description = "haproxy-asg proxies"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-proxy" })

  lifecycle {
    create_before_destroy = true
  }
}

# Behind a load balancer the bind ports accept the load balancer's security group only
# (client traffic and health checks alike, client IP preservation included): nobody
# reaches the proxies around it.
resource "aws_vpc_security_group_ingress_rule" "from_lb" {
  for_each = var.load_balancer_type == "none" ? toset([]) : local.port_keys

  security_group_id            = aws_security_group.proxy.id
  description                  = "The load balancer (clients and health checks) to bind port ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = local.lb_security_group_id
}

# Without a load balancer the proxies are the entry point (per-proxy DNS records).
resource "aws_vpc_security_group_ingress_rule" "clients" {
  #checkov:skip=CKV_AWS_260:Only with load_balancer_type = none, where the proxies themselves are the entry point: clients reach the bind ports from var.ingress_cidr_blocks, which operators narrow.
  for_each = {
    for pair in setproduct(local.listen_ports, var.ingress_cidr_blocks) :
    "${pair[0]} ${pair[1]}" => { port = pair[0], cidr = pair[1] } if var.load_balancer_type == "none"
  }

  security_group_id = aws_security_group.proxy.id
  description       = "Clients to bind port ${each.value.port} (no load balancer)"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

# The backends: their subnets only, on the pools' ports (and the other ports a group's
# tag may choose) only. A health check on another port (`check port N`) needs its own rule.
resource "aws_vpc_security_group_egress_rule" "backends" {
  for_each = {
    for pair in setproduct(var.backend_cidr_blocks, sort(distinct(flatten([for pool in var.pools : concat([pool.port], pool.ports)])))) :
    "${pair[0]}:${pair[1]}" => { cidr = pair[0], port = pair[1] }
  }

  security_group_id = aws_security_group.proxy.id
  description       = "Backends and their health checks: port ${each.value.port}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.proxy.id
  description       = "AWS APIs (SSM, S3, Auto Scaling, EC2, SQS) over HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "http" {
  security_group_id = aws_security_group.proxy.id
  description       = "Debian package mirrors (signed packages over HTTP)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

################################################################################
# Launch template and Auto Scaling group
################################################################################

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-"
  description            = "haproxy-asg proxy: Debian 12, HAProxy and the agent"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  update_default_version = true
  user_data              = base64encode(local.user_data)

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = true
  }

  network_interfaces {
    # Never a public address: clients come through the load balancer (or, without one,
    # to the private addresses of the per-proxy records); AWS is reached through NAT or
    # VPC endpoints.
    associate_public_ip_address = false
    delete_on_termination       = true
    security_groups             = [aws_security_group.proxy.id]
  }

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_size           = var.root_volume_size
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.instance_tags
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = alltrue(flatten([for group, pools in local.groups : [for pool in pools : contains([for p in var.pools : p.name], pool)]]))
      error_message = "Every pool named in var.groups (or reactor_group_pools) must be one of var.pools."
    }
    precondition {
      condition     = alltrue([for group in keys(local.weights) : contains(keys(local.groups), group)])
      error_message = "group_weights names groups that [aws] groups does not map (${join(", ", [for group in sort(keys(local.weights)) : group if !contains(keys(local.groups), group)])}): a weight is for the members of a group the agents sync. Add the group to groups (or reactor_group_pools), or drop its weight."
    }
    precondition {
      condition     = length(local.map_differences) == 0
      error_message = "The agents' group -> pools map differs from the reactor's (reactor_group_pools), so members would flap between an agent sync that drains them (or reweighs them) and a reconcile that adds them back: ${join("; ", local.map_differences)}. Leave groups and group_weights empty to take the reactor's, or make them agree."
    }
    precondition {
      condition     = contains(keys(var.ssm_agent_sha256), var.architecture)
      error_message = "ssm_agent_sha256 has no checksum for ${var.architecture}, the proxies' architecture: add ${var.architecture} = the sha256sum of https://s3.${local.region}.amazonaws.com/amazon-ssm-${local.region}/${var.ssm_agent_version}/debian_${local.deb_arch}/amazon-ssm-agent.deb."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name                      = var.name
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = var.subnet_ids
  health_check_type         = var.load_balancer_type == "none" ? "EC2" : "ELB"
  health_check_grace_period = var.health_check_grace_period
  target_group_arns         = [for port in local.listen_ports : aws_lb_target_group.this[tostring(port)].arn if var.load_balancer_type == "nlb"]
  load_balancers            = aws_elb.this[*].name

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
    }
  }

  dynamic "tag" {
    for_each = local.instance_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    precondition {
      condition     = var.max_size >= var.min_size
      error_message = "max_size must be at least min_size."
    }
  }
}

################################################################################
# The load balancer's security group (NLB or classic ELB): client CIDRs in, the
# proxies' bind ports out
################################################################################

resource "aws_security_group" "lb" {
  count = var.load_balancer_type == "none" ? 0 : 1

  name_prefix = "${var.name}-lb-"
  description = "haproxy-asg load balancer: clients in, the proxies' bind ports out"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-lb" })

  lifecycle {
    create_before_destroy = true
  }
}

moved {
  from = aws_security_group.elb
  to   = aws_security_group.lb
}

resource "aws_vpc_security_group_ingress_rule" "lb_clients" {
  #checkov:skip=CKV_AWS_260:A public entry point: clients reach the listener ports (80 in the example) from var.ingress_cidr_blocks, which operators narrow.
  for_each = {
    for pair in setproduct(local.listen_ports, var.ingress_cidr_blocks) :
    "${pair[0]} ${pair[1]}" => { port = pair[0], cidr = pair[1] } if var.load_balancer_type != "none"
  }

  security_group_id = aws_security_group.lb[0].id
  description       = "Clients to listener port ${each.value.port}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

moved {
  from = aws_vpc_security_group_ingress_rule.elb_clients
  to   = aws_vpc_security_group_ingress_rule.lb_clients
}

resource "aws_vpc_security_group_egress_rule" "lb_proxies" {
  for_each = var.load_balancer_type == "none" ? toset([]) : local.port_keys

  security_group_id            = aws_security_group.lb[0].id
  description                  = "To the proxies' bind port ${each.key} (traffic and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = aws_security_group.proxy.id
}

moved {
  from = aws_vpc_security_group_egress_rule.elb_proxies
  to   = aws_vpc_security_group_egress_rule.lb_proxies
}

################################################################################
# Network Load Balancer (proxy protocol v2)
################################################################################

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs need an operator-owned log bucket; HAProxy logs every connection with the client address it got through proxy protocol.
  #checkov:skip=CKV_AWS_150:Deletion protection is a variable (var.enable_deletion_protection), off by default so that the example can be destroyed.
  #checkov:skip=CKV2_AWS_28:WAF does not attach to a Network Load Balancer (TCP); HAProxy is the layer-7 point.
  count = var.load_balancer_type == "nlb" ? 1 : 0

  name                             = var.name
  load_balancer_type               = "network"
  internal                         = var.internal
  subnets                          = local.lb_subnet_ids
  security_groups                  = [aws_security_group.lb[0].id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.enable_deletion_protection

  tags = var.tags
}

resource "aws_lb_target_group" "this" {
  for_each = var.load_balancer_type == "nlb" ? local.port_keys : toset([])

  name                 = "${var.name}-${each.key}"
  port                 = tonumber(each.key)
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  proxy_protocol_v2    = true
  deregistration_delay = var.deregistration_delay

  health_check {
    protocol            = "TCP"
    port                = "traffic-port"
    interval            = 10
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "this" {
  #checkov:skip=CKV_AWS_2:TCP passthrough by design: HAProxy terminates the protocol (and TLS, if any) and needs proxy protocol v2, which a TLS listener would not add to the client's bytes.
  #checkov:skip=CKV_AWS_103:Same: a TCP listener has no TLS policy.
  for_each = var.load_balancer_type == "nlb" ? local.port_keys : toset([])

  load_balancer_arn = aws_lb.this[0].arn
  port              = tonumber(each.key)
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[each.key].arn
  }

  tags = var.tags
}

################################################################################
# Classic ELB (proxy protocol policy), optional
################################################################################

resource "aws_elb" "this" {
  #checkov:skip=CKV_AWS_92:Access logs need an operator-owned log bucket; HAProxy logs every connection with the client address it got through proxy protocol.
  #checkov:skip=CKV_AWS_127:TCP passthrough by design: HAProxy terminates the protocol and needs the proxy protocol header.
  count = var.load_balancer_type == "elb" ? 1 : 0

  name                        = var.name
  internal                    = var.internal
  subnets                     = local.lb_subnet_ids
  security_groups             = [aws_security_group.lb[0].id]
  cross_zone_load_balancing   = true
  connection_draining         = true
  connection_draining_timeout = var.deregistration_delay

  dynamic "listener" {
    for_each = local.listen_ports
    content {
      lb_port           = listener.value
      lb_protocol       = "tcp"
      instance_port     = listener.value
      instance_protocol = "tcp"
    }
  }

  health_check {
    target              = "TCP:${local.listen_ports[0]}"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_proxy_protocol_policy" "this" {
  count = var.load_balancer_type == "elb" ? 1 : 0

  load_balancer  = aws_elb.this[0].name
  instance_ports = [for port in local.listen_ports : tostring(port)]
}

################################################################################
# Route 53
################################################################################

resource "aws_route53_record" "alias" {
  count = var.dns_zone_id != null && var.dns_record_name != null && var.load_balancer_type != "none" ? 1 : 0

  zone_id = var.dns_zone_id
  name    = var.dns_record_name
  type    = "A"

  alias {
    name                   = local.lb_dns_name
    zone_id                = local.lb_zone_id
    evaluate_target_health = true
  }
}
