provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project    = "haproxy-asg"
      Deployment = var.name
    }
  }
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:The example takes the first two available zones of the region at apply time; the subnets pin them from then on.
  state = "available"
}

data "aws_ami" "debian" {
  most_recent = true
  owners      = ["136693071363"] # Debian

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

locals {
  azs         = slice(data.aws_availability_zones.available.names, 0, 2)
  backend_asg = "${var.name}-web"
  # What HAProxy serves and where: one pool "web", members on 8080, bound on :80.
  pool = { name = "web", port = 8080 }

  # SSM (Run Command: ssm, ssmmessages, ec2messages), the agent's sync reads (ec2,
  # autoscaling) and its reports to the reactor's inbox (sqs) from the proxies, without
  # public addresses.
  interface_endpoints = ["ssm", "ssmmessages", "ec2messages", "ec2", "autoscaling", "sqs"]

  # Spot: every instance of the web app on Spot, spread over these types.
  backend_spot = length(var.backend_spot_instance_types) > 0
}

################################################################################
# VPC: public subnets (load balancer, NAT gateway), proxy subnets (proxies, VPC
# endpoints; no public addresses), private subnets (web app)
################################################################################

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:Demo VPC; flow logs would need a log group and a role the example does not need to show.
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# No rule: nothing uses the default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = var.name }
}

resource "aws_subnet" "public" {
  count = 2

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)

  tags = { Name = "${var.name}-public-${local.azs[count.index]}" }
}

resource "aws_subnet" "private" {
  count = 2

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 10 + count.index)

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_subnet" "proxy" {
  count = 2

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 20 + count.index)
  # The proxies take no public address (clients come through the load balancer).
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-proxy-${local.azs[count.index]}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = { Name = "${var.name}-public" }
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# The proxies have no public address. AWS (SSM, the agent download, the agent's own
# Auto Scaling and EC2 reads, its reports to the reactor's inbox) is reached through the
# VPC endpoints below; Debian's
# package mirrors (haproxy, awscli at first boot) are outside AWS, so the proxy subnets
# route the rest through one NAT gateway.
resource "aws_eip" "nat" {
  domain = "vpc"

  tags = { Name = "${var.name}-nat" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.public[0].id

  tags = { Name = var.name }
}

resource "aws_route_table" "proxy" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this.id
  }

  tags = { Name = "${var.name}-proxy" }
}

resource "aws_route_table_association" "proxy" {
  count = 2

  subnet_id      = aws_subnet.proxy[count.index].id
  route_table_id = aws_route_table.proxy.id
}

resource "aws_security_group" "endpoints" {
  name_prefix = "${var.name}-endpoints-"
  description = "haproxy-asg demo: VPC interface endpoints, HTTPS from the VPC"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-endpoints" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS from the VPC (the proxies' SSM Agent, agent and AWS CLI)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = aws_vpc.this.cidr_block
}

resource "aws_vpc_endpoint" "interface" {
  for_each = toset(local.interface_endpoints)

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.proxy[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true

  tags = { Name = "${var.name}-${each.key}" }
}

# S3: the agent binary (artefact bucket) and the SSM Agent package (amazon-ssm-<region>).
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.proxy.id]

  tags = { Name = "${var.name}-s3" }
}

# The web app needs nothing from outside: private subnets keep the VPC's local route only.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = 2

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

################################################################################
# Backend: a small web app in an Auto Scaling group
################################################################################

resource "aws_security_group" "web" {
  name_prefix = "${var.name}-web-"
  description = "haproxy-asg demo web app: reachable from the proxies only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-web" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "web_from_proxies" {
  security_group_id            = aws_security_group.web.id
  description                  = "HTTP from the HAProxy fleet"
  ip_protocol                  = "tcp"
  from_port                    = local.pool.port
  to_port                      = local.pool.port
  referenced_security_group_id = module.proxy_fleet.security_group_id
}

resource "aws_launch_template" "web" {
  name_prefix            = "${var.name}-web-"
  description            = "haproxy-asg demo web app"
  image_id               = data.aws_ami.debian.id
  instance_type          = var.backend_instance_type
  update_default_version = true

  # python3 ships with Debian's cloud images: a tiny web server naming the instance.
  user_data = base64encode(<<-EOT
    #!/bin/bash
    set -euo pipefail
    install -d /srv/www
    echo "hello from $(hostname) ($(hostname -I | cut -d' ' -f1))" > /srv/www/index.html
    cat > /etc/systemd/system/demo-web.service <<'UNIT'
    [Unit]
    Description=haproxy-asg demo web app
    After=network-online.target
    [Service]
    ExecStart=/usr/bin/python3 -m http.server ${local.pool.port} --directory /srv/www
    DynamicUser=yes
    Restart=always
    [Install]
    WantedBy=multi-user.target
    UNIT
    systemctl daemon-reload
    systemctl enable --now demo-web.service
  EOT
  )

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = true
  }

  network_interfaces {
    associate_public_ip_address = false
    delete_on_termination       = true
    security_groups             = [aws_security_group.web.id]
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = 8
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }
}

resource "aws_autoscaling_group" "web" {
  name                      = local.backend_asg
  min_size                  = 1
  max_size                  = 6
  desired_capacity          = var.backend_size
  vpc_zone_identifier       = aws_subnet.private[*].id
  health_check_type         = "EC2"
  health_check_grace_period = 60
  # With Spot: launch a replacement when EC2 recommends a rebalance (the reactor drains
  # the old instance through the terminate hook; see the reactor's rebalance).
  capacity_rebalance = local.backend_spot ? true : null

  dynamic "launch_template" {
    for_each = local.backend_spot ? [] : [1]
    content {
      id      = aws_launch_template.web.id
      version = aws_launch_template.web.latest_version
    }
  }

  dynamic "mixed_instances_policy" {
    for_each = local.backend_spot ? [1] : []
    content {
      instances_distribution {
        on_demand_base_capacity                  = 0
        on_demand_percentage_above_base_capacity = 0
        spot_allocation_strategy                 = "price-capacity-optimized"
      }

      launch_template {
        launch_template_specification {
          launch_template_id = aws_launch_template.web.id
          version            = aws_launch_template.web.latest_version
        }

        dynamic "override" {
          for_each = var.backend_spot_instance_types
          content {
            instance_type = override.value
          }
        }
      }
    }
  }

  # Pre-initialised instances (Auto Scaling does not allow a warm pool with Spot or a
  # mixed instances policy: variables.tf refuses both at once).
  dynamic "warm_pool" {
    for_each = var.backend_warm_pool == null ? [] : [var.backend_warm_pool]
    content {
      min_size                    = warm_pool.value.min_size
      max_group_prepared_capacity = warm_pool.value.max_group_prepared_capacity
      pool_state                  = warm_pool.value.pool_state

      instance_reuse_policy {
        reuse_on_scale_in = warm_pool.value.reuse_on_scale_in
      }
    }
  }

  tag {
    key                 = "Name"
    value               = local.backend_asg
    propagate_at_launch = true
  }
}

################################################################################
# HAProxy fleet and the reactor
################################################################################

module "proxy_fleet" {
  source = "../../modules/proxy-fleet"

  name   = var.name
  vpc_id = aws_vpc.this.id
  # The web app's subnets: the proxies send there, on the pool's port, and nowhere else.
  backend_cidr_blocks = aws_subnet.private[*].cidr_block
  # No public addresses. Through the route table associations, so that the proxies
  # launch once their subnets route to the NAT gateway (Debian's mirrors at first boot).
  subnet_ids          = aws_route_table_association.proxy[*].subnet_id
  lb_subnet_ids       = aws_subnet.public[*].id # the load balancer faces the clients
  ingress_cidr_blocks = var.ingress_cidr_blocks # on the load balancer's security group
  instance_type       = var.proxy_instance_type
  load_balancer_type  = var.load_balancer_type
  agent_binary_path   = var.agent_binary_path
  ssm_agent_version   = var.ssm_agent_version
  ssm_agent_sha256    = var.ssm_agent_sha256
  min_size            = 2
  max_size            = 3

  pools = [
    { name = local.pool.name, port = local.pool.port, bind = ":80", health_path = "/" },
  ]
  # One map for both sides: the agents sync the groups the reactor feeds pools from.
  reactor_group_pools = module.reactor.group_pools

  dns_zone_id     = var.dns_zone_id
  dns_record_name = var.dns_record_name

  # The agents report each change's outcome to the reactor's inbox.
  report_queue_url = module.reactor.inbox_queue_url
  report_queue_arn = module.reactor.inbox_queue_arn
}

module "reactor" {
  source = "../../modules/reactor"

  name            = "${var.name}-reactor"
  lambda_zip_path = var.reactor_zip_path

  pools = {
    (aws_autoscaling_group.web.name) = [local.pool]
  }
  proxy_group_name = module.proxy_fleet.autoscaling_group_name
  proxy_tag_key    = module.proxy_fleet.proxy_tag_key
  proxy_tag_value  = module.proxy_fleet.proxy_tag_value
  dns              = module.proxy_fleet.reactor_dns
  # Who may report to the inbox, and whose reports the reactor accepts. The two modules
  # feed each other output by output (the inbox does not wait for the fleet, nor the
  # fleet's role for the reactor), so there is no cycle.
  proxy_role_arn = module.proxy_fleet.role_arn
  proxy_role_id  = module.proxy_fleet.role_unique_id

  rebalance           = var.rebalance
  alarm_sns_topic_arn = var.alarm_sns_topic_arn
}
