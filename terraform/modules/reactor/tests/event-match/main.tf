# Test helper: does an EventBridge pattern (made, like the reactor's, of exact-value
# lists at the top level and one level down) match an event? Used by the module's tests
# against the event samples in tests/events/.
variable "pattern" {
  description = "EventBridge event pattern, JSON."
  type        = string
}

variable "event" {
  description = "Event, JSON."
  type        = string
}

locals {
  pattern = jsondecode(var.pattern)
  event   = jsondecode(var.event)

  field_matches = flatten([
    for key, want in local.pattern : (
      can(tolist(want))
      ? [try(contains(want, local.event[key]), false)]
      : [for sub, values in want : try(contains(values, local.event[key][sub]), false)]
    )
  ])
}

output "matches" {
  description = "Whether every field of the pattern matches the event."
  value       = alltrue(local.field_matches)
}
