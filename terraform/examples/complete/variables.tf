variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-west-2"
}

variable "name" {
  description = "Name of the deployment: the proxy fleet's group, and a prefix for everything else."
  type        = string
  default     = "haproxy-asg-demo"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,15}$", var.name))
    error_message = "name must be 1-16 lower-case letters, digits and '-'."
  }
}

variable "reactor_zip_path" {
  description = "The reactor Lambda zip built by scripts/build-artifacts."
  type        = string
  default     = "../../../dist/reactor.zip"
}

variable "agent_binary_path" {
  description = "The agent binary built by scripts/build-artifacts."
  type        = string
  default     = "../../../dist/agent"
}

variable "vpc_cidr" {
  description = "CIDR block of the example VPC (a /16: public subnets .0/.1, web app .10/.11, proxies and VPC endpoints .20/.21)."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrsubnet(var.vpc_cidr, 8, 21))
    error_message = "vpc_cidr must be a CIDR block of /16 or larger."
  }
}

variable "ingress_cidr_blocks" {
  description = "Who may reach the demo on port 80 (the load balancer's security group; the proxies accept the load balancer only)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for cidr in var.ingress_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "ingress_cidr_blocks must be CIDR blocks."
  }
}

variable "load_balancer_type" {
  description = "nlb (default) or elb: see the proxy-fleet module."
  type        = string
  default     = "nlb"

  validation {
    condition     = contains(["nlb", "elb"], var.load_balancer_type)
    error_message = "load_balancer_type must be nlb or elb (the example's URL is the load balancer's)."
  }
}

variable "proxy_instance_type" {
  description = "Instance type of the proxies."
  type        = string
  default     = "t3.small"
}

variable "backend_instance_type" {
  description = "Instance type of the web app."
  type        = string
  default     = "t3.micro"
}

variable "backend_size" {
  description = "Desired number of web app instances (scale it to watch the reactor)."
  type        = number
  default     = 2
}

variable "backend_warm_pool" {
  description = "Optional warm pool of the web app's group (pre-initialised instances): min_size, max_group_prepared_capacity (null: the group's max_size), pool_state (Stopped, Running or Hibernated), reuse_on_scale_in. Null: none. Auto Scaling allows no warm pool with Spot, so not with backend_spot_instance_types."
  type = object({
    min_size                    = optional(number, 0)
    max_group_prepared_capacity = optional(number)
    pool_state                  = optional(string, "Stopped")
    reuse_on_scale_in           = optional(bool, false)
  })
  default = null

  validation {
    condition     = var.backend_warm_pool == null ? true : contains(["Stopped", "Running", "Hibernated"], var.backend_warm_pool.pool_state)
    error_message = "backend_warm_pool.pool_state must be Stopped, Running or Hibernated."
  }

  validation {
    condition     = var.backend_warm_pool == null ? true : (var.backend_warm_pool.min_size >= 0 && (var.backend_warm_pool.max_group_prepared_capacity == null ? true : var.backend_warm_pool.max_group_prepared_capacity >= var.backend_warm_pool.min_size))
    error_message = "backend_warm_pool.min_size must be 0 or more, and max_group_prepared_capacity (when set) at least min_size."
  }

  validation {
    condition     = var.backend_warm_pool == null || length(var.backend_spot_instance_types) == 0
    error_message = "backend_warm_pool and backend_spot_instance_types exclude each other: Auto Scaling allows no warm pool on a group with a mixed instances policy or Spot Instances."
  }
}

variable "backend_spot_instance_types" {
  description = "Run the web app on Spot Instances of these types (a mixed instances policy, price-capacity-optimized, capacity rebalancing on); the reactor drains an instance on its interruption warning. Empty: On-Demand backend_instance_type."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "rebalance" {
  description = "What the reactor does with a rebalance recommendation for a web app instance: ignore (Auto Scaling's capacity rebalancing replaces it, through the terminate hook) or drain. See the reactor module."
  type        = string
  default     = "ignore"
}

variable "ssm_agent_version" {
  description = "SSM Agent version the proxies install; null: the proxy-fleet module's default. Set with ssm_agent_sha256."
  type        = string
  default     = null
}

variable "ssm_agent_sha256" {
  description = "SHA-256 of the SSM Agent package (ssm_agent_version, or the proxy-fleet module's default version) by architecture ({ x86_64 = \"...\" }): required, since the proxies install the package only if it matches. See the proxy-fleet module's README for where the package is."
  type        = map(string)
}

variable "alarm_sns_topic_arn" {
  description = "Optional SNS topic for the reactor's alarms."
  type        = string
  default     = null
}

variable "dns_zone_id" {
  description = "Optional Route 53 zone for an alias record to the load balancer."
  type        = string
  default     = null
}

variable "dns_record_name" {
  description = "Optional record name (FQDN) in dns_zone_id."
  type        = string
  default     = null
}
