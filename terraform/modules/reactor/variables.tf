################################################################################
# General
################################################################################

variable "name" {
  description = "Name of the reactor: used for the Lambda function, its IAM role, the SSM document, the event rules, the lifecycle hooks, the inbox and dead-letter queues and the ledger table (with suffixes)."
  type        = string
  default     = "haproxy-asg-reactor"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,40}$", var.name))
    error_message = "name must be 1-40 characters of letters, digits, '-' and '_' (it is suffixed for the event rules, whose names are limited to 64)."
  }
}

variable "tags" {
  description = "Tags added to every resource that supports them."
  type        = map(string)
  default     = {}
}

################################################################################
# Lambda function
################################################################################

variable "lambda_zip_path" {
  description = "Path of the zip that `cargo lambda build --release --output-format zip -p reactor` produced (scripts/build-artifacts copies it to dist/reactor.zip)."
  type        = string

  validation {
    condition     = can(regex("\\.zip$", var.lambda_zip_path))
    error_message = "lambda_zip_path must name a .zip file."
  }
}

variable "architecture" {
  description = "Instruction set of the Lambda function: x86_64 (what scripts/build-artifacts builds by default) or arm64 (build with --arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Memory of the Lambda function, in MB."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240 && floor(var.memory_size) == var.memory_size
    error_message = "memory_size must be an integer between 128 and 10240."
  }
}

variable "timeout" {
  description = "Timeout of the Lambda function in seconds. No invocation waits for the proxies (a change is sent and the invocation returns; the hosts' reports complete it), so a minute covers a reconcile of many groups. The inbox's visibility timeout follows it (6 x timeout + inbox_batching_window_s)."
  type        = number
  default     = 60

  validation {
    condition     = var.timeout >= 10 && var.timeout <= 900 && floor(var.timeout) == var.timeout
    error_message = "timeout must be an integer between 10 and 900 (seconds)."
  }
}

variable "reserved_concurrent_executions" {
  description = "Reserved concurrency of the Lambda function (-1: unreserved). Bounds how many batches of the inbox are handled at once, and so the SSM, Auto Scaling and DynamoDB call rate. At least inbox_max_concurrency: the event source mapping does not count it, and throttled batches return to the inbox and count towards its redrive to the dead-letter queue."
  type        = number
  default     = 10

  validation {
    condition     = var.reserved_concurrent_executions == -1 || (var.reserved_concurrent_executions >= 1 && floor(var.reserved_concurrent_executions) == var.reserved_concurrent_executions)
    error_message = "reserved_concurrent_executions must be -1 or a positive integer (0 would stop the reactor)."
  }
}

variable "tracing_mode" {
  description = "X-Ray tracing mode of the Lambda function: PassThrough (no extra permission) or Active (the role is then allowed to write traces)."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode must be PassThrough or Active."
  }
}

variable "maximum_event_age_in_seconds" {
  description = "Oldest an event may be and still be delivered to the inbox, in seconds: EventBridge retries a failed delivery to the inbox (the targets' retry policy) until then, and sends it to the dead-letter queue after. Between 60 and heartbeat_timeout: an event older than the heartbeat timeout finds no lifecycle action left to complete."
  type        = number
  default     = 240

  validation {
    condition     = var.maximum_event_age_in_seconds >= 60 && floor(var.maximum_event_age_in_seconds) == var.maximum_event_age_in_seconds
    error_message = "maximum_event_age_in_seconds must be an integer of at least 60 (the least EventBridge accepts)."
  }

  validation {
    condition     = var.maximum_event_age_in_seconds <= var.heartbeat_timeout
    error_message = "maximum_event_age_in_seconds (${var.maximum_event_age_in_seconds} s) must not exceed heartbeat_timeout (${var.heartbeat_timeout} s): an event older than the heartbeat timeout finds no lifecycle action left. Lower maximum_event_age_in_seconds to at most ${var.heartbeat_timeout}, or raise heartbeat_timeout to at least ${max(var.maximum_event_age_in_seconds, 60)}."
  }
}

variable "log_retention_in_days" {
  description = "Retention of the Lambda function's CloudWatch log group, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_in_days)
    error_message = "log_retention_in_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "kms_key_arn" {
  description = "Optional customer-managed KMS key for the log group, the inbox and dead-letter queues, the ledger table and the function's environment. Null: AWS-managed encryption (SSE-SQS for the queues, DynamoDB's AWS managed key for the table). A key given here must allow CloudWatch Logs, EventBridge, DynamoDB and the reactor's role to use it, and the proxies' role (proxy_role_arn) kms:GenerateDataKey and kms:Decrypt: their reports are sent to the inbox."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN or null."
  }
}

################################################################################
# What the reactor manages
################################################################################

variable "pools" {
  description = "Backend Auto Scaling groups and the HAProxy pools each may feed: { \"<asg name>\" = [{ name = \"web\", port = 8080, ports = [8443], weight = 50 }] } (ports: the other ports a haproxy:port tag may choose; default none. weight: the HAProxy weight of this group's members in that pool, 0-256, 0 taking no new traffic; default none: the pool's server options' weight, else HAProxy's 1. A weight reaches the agents in the changes: it needs agents of this version). Becomes the POOLS environment variable (an entry's \"weight\" only when set); the groups get the lifecycle hooks and the event rules. Group tags only narrow this at run time: haproxy:pool picks among a group's pools, haproxy:port among a pool's ports; any other tag value is refused (logged, counted in TagsRefused)."
  type = map(list(object({
    name   = string
    port   = number
    ports  = optional(list(number), [])
    weight = optional(number)
  })))

  validation {
    condition     = length(var.pools) > 0
    error_message = "pools must name at least one Auto Scaling group."
  }

  validation {
    condition     = alltrue([for group in keys(var.pools) : can(regex("^[A-Za-z0-9._-]{1,255}$", group))])
    error_message = "Auto Scaling group names (the keys of pools) must be 1-255 characters of letters, digits, '.', '-' and '_'."
  }

  validation {
    condition     = alltrue(flatten([for group, pools in var.pools : [for pool in pools : can(regex("^[A-Za-z0-9_.:-]{1,64}$", pool.name))]]))
    error_message = "Pool names are HAProxy backend names: 1-64 characters of letters, digits, '_', '.', ':' and '-'."
  }

  validation {
    condition     = alltrue(flatten([for group, pools in var.pools : [for pool in pools : [for port in concat([pool.port], pool.ports) : port >= 1 && port <= 65535 && floor(port) == port]]]))
    error_message = "Pool ports (port and each of ports) must be integers between 1 and 65535."
  }

  validation {
    condition     = alltrue(flatten([for group, pools in var.pools : [for pool in pools : pool.weight == null ? true : (pool.weight >= 0 && pool.weight <= 256 && floor(pool.weight) == pool.weight)]]))
    error_message = "A pool's weight must be an integer from 0 to 256 (HAProxy's range; 0 takes no new traffic), or left out for the pool's own (server options' weight, else 1): ${join(", ", flatten([for group, pools in var.pools : [for pool in pools : "${group}/${pool.name} = ${pool.weight}" if pool.weight != null && !(try(pool.weight >= 0 && pool.weight <= 256 && floor(pool.weight) == pool.weight, false))]]))}."
  }
}

variable "managed_groups" {
  description = "More Auto Scaling groups the reactor may manage (MANAGED_GROUPS), by name or `*` glob, each with the pools its groups may feed: { \"api-*\" = [\"api\", \"api-internal:9001\"] }. A pool is `name` (its port and ports as pools defines a pool of that name) or `name:port`. A group's haproxy:pool tag may only pick among them (tags only narrow): whoever can create a group matching a glob feeds no other pool. Null: the groups of pools only. Only managed groups are ever acted on: the lifecycle and results rules match them, the role may complete lifecycle actions and tag instances in them. These groups get no lifecycle hook from this module; the schedule finds them by their haproxy:pool tag."
  type        = map(list(string))
  default     = null

  validation {
    condition     = var.managed_groups == null ? true : alltrue([for group in keys(var.managed_groups) : can(regex("^[A-Za-z0-9*_.:/-]{1,255}$", group))])
    error_message = "Each key of managed_groups must be an Auto Scaling group name or glob: 1-255 characters of letters, digits, '*', '_', '.', ':', '/' and '-'."
  }

  validation {
    condition     = var.managed_groups == null ? true : alltrue([for group, pools in var.managed_groups : length(pools) > 0 && alltrue([for pool in pools : can(regex("^[A-Za-z0-9_.-]{1,64}(:[0-9]{1,5})?$", pool))])])
    error_message = "Each entry of managed_groups lists the pools its groups may feed (at least one): `name` or `name:port`, names of 1-64 letters, digits, '_', '.' and '-'."
  }

  validation {
    condition = var.managed_groups == null ? true : alltrue(flatten([
      for group, pools in var.managed_groups : [
        for pool in pools : strcontains(pool, ":") || contains(flatten([for g, ps in var.pools : [for p in ps : p.name]]), pool)
      ]
    ]))
    error_message = "A pool of managed_groups written without a port must be one that pools defines (its port comes from there); write it `name:port` otherwise."
  }
}

variable "proxy_group_name" {
  description = "Name of the proxy fleet's Auto Scaling group (PROXY_GROUP): the proxies are its InService instances with the proxy tag; its launch/terminate results reach the reactor too, for the Route 53 records."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,255}$", var.proxy_group_name))
    error_message = "proxy_group_name must be 1-255 characters of letters, digits, '.', '-' and '_'."
  }
}

variable "proxy_tag_key" {
  description = "Key of the tag that every proxy instance carries (PROXY_TAG_KEY). ssm:SendCommand is allowed only on instances with this tag."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9 _.:/=+@-]{1,128}$", var.proxy_tag_key)) && !startswith(lower(var.proxy_tag_key), "aws:")
    error_message = "proxy_tag_key must be a valid tag key (1-128 characters, no 'aws:' prefix)."
  }
}

variable "proxy_tag_value" {
  description = "Value of the proxy tag (PROXY_TAG_VALUE)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9 _.:/=+@-]{1,256}$", var.proxy_tag_value))
    error_message = "proxy_tag_value must be a valid tag value (1-256 characters)."
  }
}

variable "proxy_role_arn" {
  description = "ARN of the proxy instances' IAM role (the proxy-fleet module's role_arn): the inbox's queue policy lets its sessions send host reports (sqs:SendMessage), nobody else but the module's EventBridge rules."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,576}$", var.proxy_role_arn))
    error_message = "proxy_role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)."
  }
}

variable "proxy_role_id" {
  description = "Unique id (AROA...) of the proxy instances' IAM role (the proxy-fleet module's role_unique_id; PROXY_ROLE_ID): a host report is accepted only when SQS names its sender <proxy_role_id>:<instance id>, the instance the report says it comes from."
  type        = string

  validation {
    condition     = can(regex("^AROA[A-Z0-9]{5,}$", var.proxy_role_id))
    error_message = "proxy_role_id must be an IAM role's unique id (AROA followed by upper-case letters and digits), as aws_iam_role.unique_id gives it; not its name or ARN."
  }
}

variable "dns" {
  description = "Optional per-proxy multi-value A records that the reactor maintains (DNS_ZONE_ID, DNS_RECORD_NAME, DNS_TTL): pass the proxy-fleet module's `reactor_dns` output. Null: no Route 53 access."
  type = object({
    zone_id     = string
    record_name = string
    ttl         = optional(number, 60)
  })
  default = null

  validation {
    condition     = var.dns == null ? true : can(regex("^[A-Z0-9]{1,32}$", var.dns.zone_id))
    error_message = "dns.zone_id must be a Route 53 hosted zone id (e.g. Z0123456789ABCDEFGHIJ)."
  }

  validation {
    condition     = var.dns == null ? true : (var.dns.ttl >= 0 && var.dns.ttl <= 172800)
    error_message = "dns.ttl must be between 0 and 172800."
  }
}

variable "health_timeout_s" {
  description = "How long a launching member may take to be reported UP by every proxy (HEALTH_TIMEOUT_S) before the reactor abandons the launch. Keep it above the pools' health_timeout_s in agent.toml."
  type        = number
  default     = 60

  validation {
    condition     = var.health_timeout_s >= 1 && var.health_timeout_s <= 3600 && floor(var.health_timeout_s) == var.health_timeout_s
    error_message = "health_timeout_s must be an integer between 1 and 3600."
  }
}

variable "drain_timeout_s" {
  description = "How long a leaving member may take to be reported drained by every proxy (DRAIN_TIMEOUT_S), up to an hour. Keep it above the pools' drain_timeout_s in agent.toml. A drain longer than heartbeat_timeout is kept alive by the reconcile, which heartbeats every lifecycle action still undecided (see heartbeat_timeout)."
  type        = number
  default     = 120

  validation {
    condition     = var.drain_timeout_s >= 1 && var.drain_timeout_s <= 3600 && floor(var.drain_timeout_s) == var.drain_timeout_s
    error_message = "drain_timeout_s must be an integer between 1 and 3600."
  }
}

variable "host_report_timeout_s" {
  description = "How long a proxy may stay silent about a change while the others have reported (HOST_REPORT_TIMEOUT_S), in seconds: then it is dropped from that change's quorum (logged, metric HostsDropped, alarm hosts_dropped) so that one lost host does not hold every launch and termination."
  type        = number
  default     = 30

  validation {
    condition     = var.host_report_timeout_s >= 1 && var.host_report_timeout_s <= 3600 && floor(var.host_report_timeout_s) == var.host_report_timeout_s
    error_message = "host_report_timeout_s must be an integer between 1 and 3600."
  }
}

variable "rebalance" {
  description = "What the reactor does with an EC2 Instance Rebalance Recommendation for an instance of a managed group (REBALANCE): drain (take it out of the pools as for a Spot interruption warning) or ignore (leave it to Auto Scaling's capacity rebalancing, whose replacement terminates it through the lifecycle hook)."
  type        = string
  default     = "ignore"

  validation {
    condition     = contains(["drain", "ignore"], var.rebalance)
    error_message = "rebalance must be drain or ignore."
  }
}

variable "spot_drain_timeout_s" {
  description = "How long the reactor lets a Spot instance that got an interruption warning drain (SPOT_DRAIN_TIMEOUT_S), in seconds. EC2 gives the instance two minutes, so 10-110."
  type        = number
  default     = 90

  validation {
    condition     = var.spot_drain_timeout_s >= 10 && var.spot_drain_timeout_s <= 110 && floor(var.spot_drain_timeout_s) == var.spot_drain_timeout_s
    error_message = "spot_drain_timeout_s must be an integer between 10 and 110: a Spot instance is interrupted two minutes after its warning."
  }
}

################################################################################
# Zones and proxy-detected health
################################################################################

variable "member_zones" {
  description = "Send each member's Availability Zone (from DescribeAutoScalingGroups' Instances[].AvailabilityZone) in the changes to the proxies (MEMBER_ZONES), for the pools' zone affinity (agent.toml: the host's top-level zone, a pool's zone_affinity). Needs agents of this version on every proxy: an older agent refuses a change that carries a zone. Turn it on once the whole fleet runs them."
  type        = bool
  default     = false
}

variable "proxy_health_groups" {
  description = "Groups whose members the proxies' health checks may mark Unhealthy in Auto Scaling (PROXY_HEALTH_GROUPS, comma-joined): when a quorum of proxies (unhealthy_quorum) has seen a member DOWN for unhealthy_after_s, the reactor calls SetInstanceHealth Unhealthy and Auto Scaling replaces it through the terminate lifecycle hook, as with an ELB health check type. Opt-in per group: names, or `*` globs, each one of the managed groups (a name of pools or managed_groups, a name that one of their globs matches, or one of their globs exactly). Empty: no proxy marks anything, and the role may not call SetInstanceHealth."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for group in var.proxy_health_groups : can(regex("^[A-Za-z0-9*_.:/-]{1,255}$", group))])
    error_message = "Each entry of proxy_health_groups must be an Auto Scaling group name or `*` glob: 1-255 characters of letters, digits, '*', '_', '.', ':', '/' and '-' (no commas: the list is joined with them)."
  }

  validation {
    condition = alltrue([
      for group in var.proxy_health_groups : contains(concat(keys(var.pools), keys(coalesce(var.managed_groups, {}))), group) || (
        !strcontains(group, "*") && anytrue([
          for managed in keys(coalesce(var.managed_groups, {})) :
          strcontains(managed, "*") && can(regex("^${replace(replace(managed, ".", "\\."), "*", ".*")}$", group))
        ])
      )
    ])
    error_message = "proxy_health_groups may only name groups the reactor manages: ${join(", ", [for group in var.proxy_health_groups : group if !contains(concat(keys(var.pools), keys(coalesce(var.managed_groups, {}))), group)])} is not a group of pools or managed_groups (a glob must be one of managed_groups' globs exactly; a name may also be one that such a glob matches). Add it to pools or managed_groups, or drop it from proxy_health_groups."
  }
}

variable "unhealthy_after_s" {
  description = "How long a member must have been seen DOWN by a quorum of proxies (UNHEALTHY_AFTER_S), in seconds, before the reactor marks it Unhealthy (only in proxy_health_groups). Longer than a deploy's restart of the backends, shorter than you can bear a dead member in the group."
  type        = number
  default     = 30

  validation {
    condition     = var.unhealthy_after_s >= 5 && var.unhealthy_after_s <= 3600 && floor(var.unhealthy_after_s) == var.unhealthy_after_s
    error_message = "unhealthy_after_s must be an integer between 5 and 3600 (seconds)."
  }
}

variable "unhealthy_quorum" {
  description = "How many proxies must see a member DOWN before the reactor marks it Unhealthy (UNHEALTHY_QUORUM). 0: a majority of the proxies in service (more than half), so that one proxy's own network trouble replaces nothing."
  type        = number
  default     = 0

  validation {
    condition     = var.unhealthy_quorum >= 0 && var.unhealthy_quorum <= 1000 && floor(var.unhealthy_quorum) == var.unhealthy_quorum
    error_message = "unhealthy_quorum must be an integer between 0 (a majority of the proxies in service) and 1000."
  }
}

variable "max_unhealthy_fraction" {
  description = "The largest share of a group's members the reactor marks Unhealthy at once (MAX_UNHEALTHY_FRACTION), above 0 and at most 1: when more of a group look DOWN, the fault is more likely the proxies' or a dependency's than the members', and replacing them all would make it worse."
  type        = number
  default     = 0.25

  validation {
    condition     = var.max_unhealthy_fraction > 0 && var.max_unhealthy_fraction <= 1
    error_message = "max_unhealthy_fraction must be above 0 and at most 1 (a share of a group's members, e.g. 0.25)."
  }
}

################################################################################
# Lifecycle hooks and events
################################################################################

variable "heartbeat_timeout" {
  description = "Heartbeat timeout of the lifecycle hooks, in seconds: how long an instance waits in Pending:Wait / Terminating:Wait without a heartbeat before default_result applies. The reconcile is what repairs a lost event and heartbeats a long wait, so this must cover two reconcile periods plus one invocation (timeout): otherwise a lost terminate event lets an instance die still in the pools."
  type        = number
  default     = 720

  validation {
    condition     = var.heartbeat_timeout >= 30 && var.heartbeat_timeout <= 7200 && floor(var.heartbeat_timeout) == var.heartbeat_timeout
    error_message = "heartbeat_timeout must be an integer between 30 and 7200."
  }

  validation {
    condition     = var.heartbeat_timeout >= 2 * 60 * try(tonumber(regex("^rate\\(([0-9]+) minutes?\\)$", var.reconcile_schedule)[0]), 0) + var.timeout
    error_message = "heartbeat_timeout (${var.heartbeat_timeout} s) must cover two reconcile periods (reconcile_schedule = \"${var.reconcile_schedule}\": ${2 * 60 * try(tonumber(regex("^rate\\(([0-9]+) minutes?\\)$", var.reconcile_schedule)[0]), 0)} s) plus one invocation (timeout = ${var.timeout} s), so that a lifecycle action whose event was lost is seen and heartbeated before it times out: raise heartbeat_timeout to at least ${2 * 60 * try(tonumber(regex("^rate\\(([0-9]+) minutes?\\)$", var.reconcile_schedule)[0]), 0) + var.timeout}${floor((var.heartbeat_timeout - var.timeout) / 120) >= 1 ? ", or shorten reconcile_schedule to rate(${floor((var.heartbeat_timeout - var.timeout) / 120)} minute${floor((var.heartbeat_timeout - var.timeout) / 120) == 1 ? "" : "s"}) or less" : ""}."
  }
}

variable "default_result" {
  description = "What Auto Scaling does when a hook times out: ABANDON (a launch that no proxy confirmed is terminated) or CONTINUE."
  type        = string
  default     = "ABANDON"

  validation {
    condition     = contains(["CONTINUE", "ABANDON"], var.default_result)
    error_message = "default_result must be CONTINUE or ABANDON."
  }
}

variable "reconcile_schedule" {
  description = "How often the reactor reconciles every pool with its group (catches lost events) and heartbeats the lifecycle actions still undecided, as an EventBridge rate expression in minutes: rate(1 minute) or rate(N minutes), N up to 1440."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition = (
      can(regex("^rate\\((1 minute|([2-9]|[1-9][0-9]+) minutes)\\)$", var.reconcile_schedule)) &&
      try(tonumber(regex("^rate\\(([0-9]+) minutes?\\)$", var.reconcile_schedule)[0]) <= 1440, false)
    )
    error_message = "reconcile_schedule must be \"rate(1 minute)\" or \"rate(N minutes)\" with N from 2 to 1440 (hours and days are not accepted: the heartbeat check works in minutes)."
  }
}

################################################################################
# Inbox (SQS) and its event source mapping
################################################################################

variable "inbox_batch_size" {
  description = "Most messages of the inbox (events and host reports) one invocation gets (the event source mapping's batch_size). Above 10, inbox_batching_window_s must be at least 1 (AWS's rule for SQS event sources)."
  type        = number
  default     = 10

  validation {
    condition     = var.inbox_batch_size >= 1 && var.inbox_batch_size <= 10000 && floor(var.inbox_batch_size) == var.inbox_batch_size
    error_message = "inbox_batch_size must be an integer between 1 and 10000 (the most a standard queue's event source mapping takes)."
  }
}

variable "inbox_batching_window_s" {
  description = "How long Lambda may gather inbox messages before it invokes the reactor, in seconds (the event source mapping's maximum_batching_window_in_seconds). 0: at once. Must be at least 1 when inbox_batch_size is above 10."
  type        = number
  default     = 0

  validation {
    condition     = var.inbox_batching_window_s >= 0 && var.inbox_batching_window_s <= 300 && floor(var.inbox_batching_window_s) == var.inbox_batching_window_s
    error_message = "inbox_batching_window_s must be an integer between 0 and 300."
  }

  validation {
    condition     = var.inbox_batch_size <= 10 || var.inbox_batching_window_s >= 1
    error_message = "inbox_batch_size = ${var.inbox_batch_size} needs inbox_batching_window_s >= 1: for SQS event sources AWS accepts a batch size above 10 only with a batching window of at least one second. Set inbox_batching_window_s to 1 or more, or inbox_batch_size to 10 or less."
  }
}

variable "inbox_max_concurrency" {
  description = "Most concurrent invocations the inbox's event source mapping starts (scaling_config.maximum_concurrency, 2-1000). At most reserved_concurrent_executions when that is set: throttled batches return to the inbox and count towards its redrive to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.inbox_max_concurrency >= 2 && var.inbox_max_concurrency <= 1000 && floor(var.inbox_max_concurrency) == var.inbox_max_concurrency
    error_message = "inbox_max_concurrency must be an integer between 2 and 1000."
  }

  validation {
    condition     = var.reserved_concurrent_executions == -1 || var.inbox_max_concurrency <= var.reserved_concurrent_executions
    error_message = "inbox_max_concurrency (${var.inbox_max_concurrency}) must not exceed reserved_concurrent_executions (${var.reserved_concurrent_executions}): Lambda would throttle the extra batches, which return to the inbox and, after 5 receives, go to the dead-letter queue. Lower inbox_max_concurrency to at most ${var.reserved_concurrent_executions}, or raise reserved_concurrent_executions to at least ${var.inbox_max_concurrency} (or -1)."
  }
}

variable "inbox_age_alarm_s" {
  description = "The inbox-age alarm fires when the oldest message of the inbox (ApproximateAgeOfOldestMessage) is older than this, in seconds: events and host reports wait there instead of reaching the reactor."
  type        = number
  default     = 300

  validation {
    condition     = var.inbox_age_alarm_s >= 60 && var.inbox_age_alarm_s <= 86400 && floor(var.inbox_age_alarm_s) == var.inbox_age_alarm_s
    error_message = "inbox_age_alarm_s must be an integer between 60 and 86400."
  }
}

################################################################################
# Ledger (DynamoDB)
################################################################################

variable "ledger_ttl_s" {
  description = "How long a decided item of the lifecycle ledger stays before DynamoDB's TTL removes it (LEDGER_TTL_S), in seconds: a late duplicate of an event finds its decision while the item is there. At least maximum_event_age_in_seconds (the oldest event EventBridge still delivers), at most a year."
  type        = number
  default     = 86400

  validation {
    condition     = var.ledger_ttl_s >= 3600 && var.ledger_ttl_s <= 31536000 && floor(var.ledger_ttl_s) == var.ledger_ttl_s
    error_message = "ledger_ttl_s must be an integer between 3600 (an hour) and 31536000 (a year)."
  }

  validation {
    condition     = var.ledger_ttl_s >= var.maximum_event_age_in_seconds
    error_message = "ledger_ttl_s (${var.ledger_ttl_s} s) must be at least maximum_event_age_in_seconds (${var.maximum_event_age_in_seconds} s): a late delivery of an event must still find the decision it led to."
  }
}

################################################################################
# Observability
################################################################################

variable "alarm_sns_topic_arn" {
  description = "Optional SNS topic for the alarms' actions (ALARM and OK). Null: the alarms exist without actions. An encrypted topic's key must allow CloudWatch to use it."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_sns_topic_arn == null ? true : can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>) or null."
  }
}

variable "pending_action_alarm_s" {
  description = "The PendingActionMaxAge alarm fires when a lifecycle action has been pending longer than this, in seconds. Keep it above the longest drain you expect (drain_timeout_s)."
  type        = number
  default     = 600

  validation {
    condition     = var.pending_action_alarm_s >= 60 && var.pending_action_alarm_s <= 86400 && floor(var.pending_action_alarm_s) == var.pending_action_alarm_s
    error_message = "pending_action_alarm_s must be an integer between 60 and 86400."
  }
}
