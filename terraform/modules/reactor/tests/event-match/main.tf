# Test helper: does an EventBridge pattern (made, like the reactor's, of value lists at the
# top level and one level down, each value exact or {"wildcard": "glob"}) match an event?
# Used by the module's tests against the event samples in tests/events/.
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

  # A value matches an entry of the list when it equals it, or when the entry is a
  # {"wildcard": ...} filter whose glob (`*`: any characters) matches the whole value.
  # A field the event lacks matches nothing.
  field_matches = flatten([
    for key, want in local.pattern : (
      can(keys(want))
      ? [
        for sub, values in want : anytrue([
          for w in values :
          try(w == local.event[key][sub], false) ||
          can(regex("^${replace(replace(w.wildcard, ".", "\\."), "*", ".*")}$", local.event[key][sub]))
        ])
      ]
      : [
        anytrue([
          for w in want :
          try(w == local.event[key], false) ||
          can(regex("^${replace(replace(w.wildcard, ".", "\\."), "*", ".*")}$", local.event[key]))
        ])
      ]
    )
  ])
}

output "matches" {
  description = "Whether every field of the pattern matches the event."
  value       = alltrue(local.field_matches)
}
