# Test configuration, not part of the example: scripts/check-terraform-apply copies this
# file and emulator_override.tf next to a copy of the example's own files, to apply and
# destroy the example against the project's AWS emulator (tests/emulator). Never copy
# them into a real deployment.

variable "emulator_endpoint" {
  description = "URL of the AWS emulator (tests/emulator/server.py), e.g. http://127.0.0.1:5000: every AWS API the example calls goes there."
  type        = string

  validation {
    condition     = can(regex("^http://(127\\.[0-9]+\\.[0-9]+\\.[0-9]+|localhost|\\[::1\\]):[0-9]+$", var.emulator_endpoint))
    error_message = "emulator_endpoint must be a loopback http URL with a port: the emulator serves loopback only."
  }
}
