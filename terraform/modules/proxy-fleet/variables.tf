################################################################################
# General
################################################################################

variable "name" {
  description = "Name of the proxy fleet: the Auto Scaling group (PROXY_GROUP for the reactor), the load balancer, and a prefix for the other resources."
  type        = string
  default     = "haproxy-asg-proxy"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,23}$", var.name)) && !endswith(var.name, "-")
    error_message = "name must be 1-24 characters of letters, digits and '-', not starting or ending with '-' (load balancer and target group names are limited to 32)."
  }
}

variable "tags" {
  description = "Tags added to every resource that supports them."
  type        = map(string)
  default     = {}
}

################################################################################
# Network
################################################################################

variable "vpc_id" {
  description = "VPC of the proxies and the load balancer."
  type        = string
}

variable "backend_cidr_blocks" {
  description = "CIDR blocks of the backend groups' subnets: the only addresses the proxies may send to on the pools' ports (their security group's egress), and agent.toml's member_networks unless that is given. Not the whole VPC: a forged change could otherwise aim a public pool at internal services."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.backend_cidr_blocks) > 0 && alltrue([for cidr in var.backend_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "backend_cidr_blocks must be a non-empty list of CIDR blocks (the backend subnets: 10.0.10.0/24, ...)."
  }
}

variable "subnet_ids" {
  description = "Subnets of the proxy instances (the Auto Scaling group)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "lb_subnet_ids" {
  description = "Subnets of the load balancer; null: subnet_ids."
  type        = list(string)
  default     = null
}

variable "ingress_cidr_blocks" {
  description = "Client addresses allowed to the listener ports, on the load balancer's security group (NLB or classic ELB). The proxies accept their bind ports from that security group only. With load_balancer_type = none (no load balancer) it applies to the proxies' own security group."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for cidr in var.ingress_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "ingress_cidr_blocks must be CIDR blocks."
  }
}

################################################################################
# Instances
################################################################################

variable "architecture" {
  description = "Instruction set of the proxies: x86_64 (what scripts/build-artifacts builds the agent for) or arm64 (needs an arm64 agent and instance_type)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "ami_id" {
  description = "AMI of the proxies; null: the newest official Debian 12 AMI (owner 136693071363) of the architecture. It must be Debian 12 (bookworm): the user data installs the HAProxy that haproxy chooses for it (by default Debian 12's own package, 2.6)."
  type        = string
  default     = null
}

variable "root_device_name" {
  description = "Root device name of the AMI (Debian's AMIs: /dev/xvda); its volume gets encrypted and sized."
  type        = string
  default     = "/dev/xvda"
}

variable "root_volume_size" {
  description = "Size of the root volume, GiB."
  type        = number
  default     = 8

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 1024
    error_message = "root_volume_size must be between 8 and 1024."
  }
}

variable "instance_type" {
  description = "Instance type of the proxies."
  type        = string
  default     = "t3.small"
}

variable "min_size" {
  description = "Minimum number of proxies."
  type        = number
  default     = 2

  validation {
    condition     = var.min_size >= 0
    error_message = "min_size must be 0 or more."
  }
}

variable "max_size" {
  description = "Maximum number of proxies."
  type        = number
  default     = 4

  validation {
    condition     = var.max_size >= 1
    error_message = "max_size must be 1 or more."
  }
}

variable "desired_capacity" {
  description = "Desired number of proxies; null: min_size at creation, then left to scaling."
  type        = number
  default     = null
}

variable "health_check_grace_period" {
  description = "Seconds after launch before load balancer health checks count (covers package install and the first sync)."
  type        = number
  default     = 300
}

variable "kms_key_arn" {
  description = "Optional customer-managed KMS key for the root volumes and the artefact bucket; null: AWS-managed keys."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN or null."
  }
}

################################################################################
# Agent and HAProxy
################################################################################

variable "agent_binary_path" {
  description = "Local path of the agent binary (x86_64 Linux; scripts/build-artifacts copies it to dist/agent). The module uploads it to S3; the proxies download it and check its SHA-256."
  type        = string
}

variable "ssm_agent_version" {
  description = "Version of the SSM Agent the proxies install (Debian's AMIs lack it), downloaded from https://s3.<region>.amazonaws.com/amazon-ssm-<region>/<version>/debian_<amd64|arm64>/amazon-ssm-agent.deb. Set it together with ssm_agent_sha256. Null: the default."
  type        = string
  default     = "3.3.2299.0"
  nullable    = false

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.ssm_agent_version))
    error_message = "ssm_agent_version must be a version such as 3.3.2299.0 (not \"latest\": the package is checked against a pinned SHA-256)."
  }
}

variable "ssm_agent_sha256" {
  description = "SHA-256 (hex) of the SSM Agent package of ssm_agent_version, by architecture ({ x86_64 = \"...\", arm64 = \"...\" }; the architecture the proxies run is required, the other may be left out): the sha256sum of https://s3.<region>.amazonaws.com/amazon-ssm-<region>/<ssm_agent_version>/debian_<amd64|arm64>/amazon-ssm-agent.deb. The user data installs the package only if `sha256sum -c` accepts it, and otherwise stops: without a true checksum every proxy stops at boot, so there is no default."
  type        = map(string)
  nullable    = false

  validation {
    condition     = length(var.ssm_agent_sha256) > 0 && alltrue([for arch in keys(var.ssm_agent_sha256) : contains(["x86_64", "arm64"], arch)])
    error_message = "ssm_agent_sha256 is keyed by architecture: x86_64 and/or arm64."
  }

  validation {
    condition     = alltrue([for sum in values(var.ssm_agent_sha256) : can(regex("^[0-9a-f]{64}$", sum)) && sum != "0000000000000000000000000000000000000000000000000000000000000000"])
    error_message = "Each ssm_agent_sha256 value must be the package's SHA-256: 64 lower-case hex digits (the old all-zero placeholder matches no package)."
  }
}

variable "haproxy" {
  description = "Which HAProxy the proxies install (the versions and what each gives: docs/design.md, \"Which version a proxy runs\"). source = \"debian\" (the default): Debian 12's own package, HAProxy 2.6 (version may be left out or \"2.6\"). source = \"haproxy.debian.net\": the version line `version` (\"2.6\", \"2.8\", \"3.0\" or \"3.2\") from haproxy.debian.net, the Debian HAProxy maintainers' repository: suite bookworm-backports-<version>, its latest release of that line; its signing key is pinned by key_fingerprint and only haproxy is taken from there (apt pinning). source = \"deb\": a package you provide (built from Debian's packaging, for the proxies' architecture) at url (https://... or s3://<bucket>/<key>, a bucket of the fleet's region: the proxies' role may read that object), installed only if `sha256sum -c` accepts sha256 (otherwise the provisioning stops), then held (apt-mark hold). Whatever the source, the user data prints `haproxy -v` and stops unless /usr/sbin/haproxy is the version chosen."
  type = object({
    source          = optional(string, "debian")
    version         = optional(string)
    url             = optional(string)
    sha256          = optional(string)
    key_fingerprint = optional(string, "AEF2348766F371C689A7360095A42FE8353525F9")
  })
  default  = {}
  nullable = false

  validation {
    condition     = contains(["debian", "haproxy.debian.net", "deb"], var.haproxy.source)
    error_message = "haproxy.source must be \"debian\" (Debian 12's own package, 2.6: the default), \"haproxy.debian.net\" (a version line from the Debian HAProxy maintainers' repository) or \"deb\" (a package you provide by url and sha256)."
  }

  validation {
    condition     = var.haproxy.version == null ? true : contains(["2.6", "2.8", "3.0", "3.2"], var.haproxy.version)
    error_message = "haproxy.version must be a version the agent supports: \"2.6\", \"2.8\", \"3.0\" or \"3.2\", quoted (3.0 unquoted becomes \"3\")."
  }

  validation {
    condition     = var.haproxy.source != "debian" || var.haproxy.version == null || var.haproxy.version == "2.6"
    error_message = "Debian 12's own haproxy package is 2.6: for 2.8, 3.0 or 3.2 set haproxy.source = \"haproxy.debian.net\" (or \"deb\" with your package)."
  }

  validation {
    condition     = var.haproxy.source == "debian" || var.haproxy.version != null
    error_message = "haproxy.version is required with source \"haproxy.debian.net\" or \"deb\": it chooses the repository's version line, and the user data stops unless the installed HAProxy is that version."
  }

  validation {
    condition     = var.haproxy.source == "deb" ? var.haproxy.url != null && var.haproxy.sha256 != null : var.haproxy.url == null && var.haproxy.sha256 == null
    error_message = "haproxy.url and haproxy.sha256 go with source = \"deb\" only, and it needs both: the package's URL and its SHA-256."
  }

  validation {
    condition     = var.haproxy.url == null ? true : can(regex("^(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~%/+=:@?&-]+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9._~%/+=:@-]+)$", var.haproxy.url))
    error_message = "haproxy.url must be https://<host>/<path> or s3://<bucket>/<key> (plain http is refused: the package comes over an authenticated channel, and its SHA-256 is checked), of letters, digits and ._~%/+=:@?&- only (no spaces or quotes: it goes into a shell script)."
  }

  validation {
    condition     = var.haproxy.sha256 == null ? true : can(regex("^[0-9a-f]{64}$", var.haproxy.sha256)) && var.haproxy.sha256 != "0000000000000000000000000000000000000000000000000000000000000000"
    error_message = "haproxy.sha256 must be the package's SHA-256 as sha256sum prints it: 64 lower-case hex digits."
  }

  validation {
    condition     = can(regex("^[0-9A-F]{40}$", var.haproxy.key_fingerprint))
    error_message = "haproxy.key_fingerprint must be an OpenPGP v4 fingerprint: 40 upper-case hex digits without spaces (haproxy.debian.net's key: AEF2348766F371C689A7360095A42FE8353525F9)."
  }
}

variable "pools" {
  description = "HAProxy pools, written to /etc/haproxy-asg/agent.toml as [[pool]] (docs/interfaces.md). `bind` is the frontend bind (\":80\"); its port is also the load balancer's listener port. `ports`: the other ports a group's haproxy:port tag may choose for the pool (the reactor's pools[].ports; default none): tags only narrow. `balance`: the backend's balance algorithm (default roundrobin); with HAProxy 3.0+ a dynamic one lets the pool grow past its slots without a reload, static-rr and map-based hashes keep the reload. `zone_affinity`: \"off\" (default) or \"prefer\": the pool sends to the members in the proxy's own Availability Zone (agent.toml's zone, which the user data writes) while at least `min_zone_members` (default 1) of them are UP there, else to every member; it needs the reactor's member_zones = true and agents of this version. Each is written to the pool's [[pool]] only when set away from its default."
  type = list(object({
    name             = string
    port             = number
    ports            = optional(list(number), [])
    bind             = string
    slots            = optional(number, 16)
    max_slots        = optional(number, 4096)
    balance          = optional(string, "roundrobin")
    max_members      = optional(number, 1000)
    server_options   = optional(string, "check inter 500ms fall 2 rise 2")
    health_path      = optional(string)
    health_timeout_s = optional(number, 30)
    drain_timeout_s  = optional(number, 60)
    zone_affinity    = optional(string, "off")
    min_zone_members = optional(number, 1)
  }))

  validation {
    condition     = length(var.pools) > 0
    error_message = "pools must have at least one pool."
  }

  validation {
    condition     = alltrue([for pool in var.pools : can(regex("^[A-Za-z0-9._:-]{1,64}$", pool.name))])
    error_message = "Pool names are HAProxy backend names: 1-64 characters of letters, digits, '.', '_', ':' and '-' (the agent's own rule)."
  }

  validation {
    condition     = length(distinct([for pool in var.pools : pool.name])) == length(var.pools)
    error_message = "Pool names must be unique."
  }

  validation {
    condition     = alltrue(flatten([for pool in var.pools : [for port in concat([pool.port], pool.ports) : port >= 1 && port <= 65535 && floor(port) == port]]))
    error_message = "Pool ports (port and each of ports) must be integers between 1 and 65535."
  }

  validation {
    condition = alltrue([
      for pool in var.pools :
      can(regex("^(\\*|[0-9.]*|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$", pool.bind)) &&
      try(tonumber(regex(":([0-9]+)$", pool.bind)[0]) >= 1 && tonumber(regex(":([0-9]+)$", pool.bind)[0]) <= 65535, false)
    ])
    error_message = "Each bind must be \"[address]:port\" with a port between 1 and 65535, e.g. \":80\" or \"0.0.0.0:443\"."
  }

  validation {
    condition     = length(distinct([for pool in var.pools : try(regex(":([0-9]+)$", pool.bind)[0], pool.bind)])) == length(var.pools)
    error_message = "Each pool needs its own bind port (one load balancer listener per port)."
  }

  validation {
    condition     = alltrue([for pool in var.pools : pool.slots >= 1 && pool.slots <= 4096 && floor(pool.slots) == pool.slots])
    error_message = "slots must be an integer between 1 and 4096."
  }

  validation {
    condition     = alltrue([for pool in var.pools : pool.max_slots >= pool.slots && pool.max_slots <= 100000 && floor(pool.max_slots) == pool.max_slots])
    error_message = "max_slots must be an integer from slots to 100000: the agent grows a pool's slots (by a hitless reload) up to it, never past it."
  }

  validation {
    condition     = alltrue([for pool in var.pools : pool.max_members >= 1 && pool.max_members <= 100000 && floor(pool.max_members) == pool.max_members])
    error_message = "max_members must be an integer between 1 and 100000 (the most members of the pool one change may name)."
  }

  validation {
    condition     = alltrue([for pool in var.pools : can(regex("^[A-Za-z0-9 ._,()-]{1,128}$", pool.balance)) && trimspace(pool.balance) != ""])
    error_message = "balance must be an HAProxy balance algorithm (roundrobin, leastconn, static-rr, source, uri, hdr(host)...): up to 128 letters, digits and ' -_.,()' (the agent's own rule)."
  }

  validation {
    condition     = alltrue([for pool in var.pools : can(regex("^[A-Za-z0-9 ._:,/-]{0,512}$", pool.server_options))])
    error_message = "server_options may only hold up to 512 letters, digits, spaces and '._:,/-' on one line (the agent's own rule: it goes into haproxy.cfg)."
  }

  validation {
    condition     = alltrue([for pool in var.pools : pool.health_path == null ? true : can(regex("^/[A-Za-z0-9_.~/?&=%-]*$", pool.health_path))])
    error_message = "health_path must be an absolute URL path without spaces or quotes."
  }

  validation {
    condition     = alltrue([for pool in var.pools : pool.health_timeout_s >= 1 && pool.drain_timeout_s >= 1])
    error_message = "health_timeout_s and drain_timeout_s must be at least 1."
  }

  validation {
    condition     = alltrue([for pool in var.pools : contains(["off", "prefer"], pool.zone_affinity)])
    error_message = "zone_affinity must be \"off\" (every member alike, the default) or \"prefer\" (the proxy's own zone first): ${join(", ", [for pool in var.pools : "${pool.name} has ${jsonencode(pool.zone_affinity)}" if !contains(["off", "prefer"], pool.zone_affinity)])}."
  }

  validation {
    condition     = alltrue([for pool in var.pools : pool.min_zone_members >= 1 && pool.min_zone_members <= 100000 && floor(pool.min_zone_members) == pool.min_zone_members])
    error_message = "min_zone_members must be an integer from 1 to 100000: how many members UP in the proxy's own zone a pool with zone_affinity = \"prefer\" needs before it keeps to them (1, the default: any)."
  }
}

variable "groups" {
  description = "Auto Scaling group -> pool names, written to agent.toml [aws] groups: the agent service syncs these at start and every sync_interval_s (and `agent sync` on demand). Empty: reactor_group_pools' groups when given, else no [aws] section."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue([for group in keys(var.groups) : can(regex("^[A-Za-z0-9._-]{1,255}$", group))])
    error_message = "Auto Scaling group names must be 1-255 characters of letters, digits, '.', '-' and '_'."
  }

  validation {
    condition     = alltrue(flatten([for group, pools in var.groups : [for pool in pools : can(regex("^[A-Za-z0-9._:-]{1,64}$", pool))]]))
    error_message = "The pools of groups are HAProxy backend names: 1-64 characters of letters, digits, '.', '_', ':' and '-'."
  }
}

variable "reactor_group_pools" {
  description = "The reactor module's group_pools output (group -> its pools, each { name, port, ports, weight }): one map for both sides. With it, groups may be left empty (agent.toml [aws] groups is then this map's pool names, and [aws] weights its groups' weights where group_weights is empty), and the plan fails where groups, a pool's port or ports, or a group's weight differ from it: a member the reactor adds from a group the agents do not map would otherwise be drained by every agent sync and added back by every reconcile. Null: not checked."
  type = map(list(object({
    name   = string
    port   = number
    ports  = optional(list(number), [])
    weight = optional(number)
  })))
  default = null
}

variable "group_weights" {
  description = "Auto Scaling group -> the HAProxy weight of its members (0-256; 0 takes no new traffic), written to agent.toml [aws] weights for the agent's own syncs (needs agents of this version): the same weight the reactor's pools give the group's entries (its weight), or members would change weight between a reactor change and an agent sync. Each group must be one of [aws] groups. Empty: taken from reactor_group_pools where a group's pools there all carry the same weight; else none (HAProxy's, from the pool's server options)."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for group, weight in var.group_weights : weight >= 0 && weight <= 256 && floor(weight) == weight])
    error_message = "group_weights' weights must be integers from 0 to 256 (HAProxy's range; 0 takes no new traffic): ${join(", ", [for group, weight in var.group_weights : "${group} = ${weight}" if !(weight >= 0 && weight <= 256 && floor(weight) == weight)])}."
  }

  validation {
    condition     = alltrue([for group in keys(var.group_weights) : can(regex("^[A-Za-z0-9._-]{1,255}$", group))])
    error_message = "The keys of group_weights must be Auto Scaling group names: 1-255 characters of letters, digits, '.', '-' and '_'."
  }
}

variable "sync_interval_s" {
  description = "Seconds between the agent service's own syncs from the groups (it also syncs at start): what repairs a change it missed. Written to agent.toml [aws] sync_interval_s when groups is set."
  type        = number
  default     = 300

  validation {
    condition     = var.sync_interval_s >= 1 && var.sync_interval_s <= 86400
    error_message = "sync_interval_s must be between 1 and 86400 seconds."
  }
}

variable "member_networks" {
  description = "CIDR blocks a member address may be in (agent.toml member_networks): the agent refuses any other address, whatever a change says. null: backend_cidr_blocks."
  type        = list(string)
  default     = null

  validation {
    condition     = var.member_networks == null ? true : length(var.member_networks) > 0 && alltrue([for cidr in var.member_networks : can(cidrhost(cidr, 0))])
    error_message = "member_networks must be null or a non-empty list of CIDR blocks (10.0.0.0/16, fd00::/8)."
  }
}

variable "metrics_haproxy" {
  description = "address:port where HAProxy serves its Prometheus exporter at /metrics (agent.toml [metrics] haproxy; a frontend in the rendered haproxy.cfg). \"\": none. Loopback by default: only a scraper on the host reaches it."
  type        = string
  default     = "127.0.0.1:8405"

  validation {
    condition     = var.metrics_haproxy == "" || can(regex("^([0-9.]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$", var.metrics_haproxy))
    error_message = "metrics_haproxy must be \"\" or an IP address:port (127.0.0.1:8405, [::1]:8405); host names are not resolved."
  }

  validation {
    condition     = var.metrics_haproxy == "" || try(tonumber(regex(":([0-9]+)$", var.metrics_haproxy)[0]) >= 1024 && tonumber(regex(":([0-9]+)$", var.metrics_haproxy)[0]) <= 65535, false)
    error_message = "metrics_haproxy's port must be from 1024 to 65535: the privileged ports are the clients' (80, 443), and a scraper needs none of them."
  }
}

variable "metrics_agent" {
  description = "address:port where the agent service serves its own Prometheus /metrics (agent.toml [metrics] agent). \"\": none."
  type        = string
  default     = "127.0.0.1:9405"

  validation {
    condition     = var.metrics_agent == "" || can(regex("^([0-9.]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$", var.metrics_agent))
    error_message = "metrics_agent must be \"\" or an IP address:port (127.0.0.1:9405, [::1]:9405); host names are not resolved."
  }

  validation {
    condition     = var.metrics_agent == "" || try(tonumber(regex(":([0-9]+)$", var.metrics_agent)[0]) >= 1024 && tonumber(regex(":([0-9]+)$", var.metrics_agent)[0]) <= 65535, false)
    error_message = "metrics_agent's port must be from 1024 to 65535: the agent's unit runs without capabilities and cannot bind a privileged port (it would fail at every start)."
  }
}

variable "proxy_tag_key" {
  description = "Key of the tag every proxy carries; the reactor may send SSM commands only to instances with it, and counts as proxies the InService instances of the group with it."
  type        = string
  default     = "haproxy-asg:fleet"

  validation {
    condition     = can(regex("^[A-Za-z0-9 _.:/=+@-]{1,128}$", var.proxy_tag_key)) && !startswith(lower(var.proxy_tag_key), "aws:")
    error_message = "proxy_tag_key must be a valid tag key (1-128 characters, no 'aws:' prefix)."
  }
}

variable "proxy_tag_value" {
  description = "Value of the proxy tag; null: the fleet's name."
  type        = string
  default     = null

  validation {
    condition     = var.proxy_tag_value == null ? true : can(regex("^[A-Za-z0-9 _.:/=+@-]{1,256}$", var.proxy_tag_value))
    error_message = "proxy_tag_value must be a valid tag value (1-256 characters)."
  }
}

################################################################################
# Reports to the reactor
################################################################################

variable "report_queue_url" {
  description = "URL of the reactor's inbox (the reactor module's inbox_queue_url): agent.toml [report] queue_url, where each proxy's agent service sends the outcome of every change (UP, drained, failed) with the instance's credentials."
  type        = string

  validation {
    condition     = can(regex("^(https://[A-Za-z0-9.-]+|http://(127\\.[0-9]+\\.[0-9]+\\.[0-9]+|localhost)(:[0-9]{1,5})?)/[0-9]{12}/[A-Za-z0-9_-]{1,80}$", var.report_queue_url))
    error_message = "report_queue_url must be an SQS queue URL, https://sqs.<region>.amazonaws.com/<account>/<queue> (plain http only to a loopback emulator)."
  }
}

variable "report_queue_arn" {
  description = "ARN of the reactor's inbox (the reactor module's inbox_queue_arn): the proxies' role may sqs:SendMessage there, and nowhere else."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,80}$", var.report_queue_arn))
    error_message = "report_queue_arn must be an SQS queue ARN (arn:aws:sqs:<region>:<account>:<queue>)."
  }

  validation {
    condition     = try(endswith(var.report_queue_url, "/${split(":", var.report_queue_arn)[4]}/${split(":", var.report_queue_arn)[5]}"), false)
    error_message = "report_queue_arn and report_queue_url must name the same queue (account and name): the role may send only where the agent sends."
  }
}

################################################################################
# Load balancer and DNS
################################################################################

variable "load_balancer_type" {
  description = "nlb: Network Load Balancer, TCP listeners, target groups with proxy protocol v2. elb: classic ELB with a proxy protocol policy. none: no load balancer (clients reach the proxies through the reactor's per-proxy DNS records). With nlb or elb, HAProxy binds with accept-proxy."
  type        = string
  default     = "nlb"

  validation {
    condition     = contains(["nlb", "elb", "none"], var.load_balancer_type)
    error_message = "load_balancer_type must be nlb, elb or none."
  }
}

variable "internal" {
  description = "Make the load balancer internal."
  type        = bool
  default     = false
}

variable "enable_deletion_protection" {
  description = "Deletion protection of the NLB."
  type        = bool
  default     = false
}

variable "deregistration_delay" {
  description = "Seconds the load balancer drains a leaving proxy (NLB deregistration delay, ELB connection draining timeout)."
  type        = number
  default     = 60

  validation {
    condition     = var.deregistration_delay >= 1 && var.deregistration_delay <= 3600
    error_message = "deregistration_delay must be between 1 and 3600."
  }
}

variable "dns_zone_id" {
  description = "Route 53 hosted zone for dns_record_name; null: no DNS."
  type        = string
  default     = null
}

variable "dns_record_name" {
  description = "Record name (FQDN). With a load balancer: an alias A record to it. With load_balancer_type = none: the per-proxy multi-value A records that the reactor maintains (see the reactor_dns output)."
  type        = string
  default     = null
}

variable "dns_ttl" {
  description = "TTL of the per-proxy records the reactor maintains (load_balancer_type = none)."
  type        = number
  default     = 60
}
