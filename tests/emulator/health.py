"""SetInstanceHealth as Auto Scaling acts on it: an Unhealthy instance is replaced.

moto 5.2.5 stores the status (a 500 for an instance outside a group or in a warm pool)
and nothing happens; ``ShouldRespectGracePeriod`` is ignored, and a group created
without ``HealthCheckGracePeriod`` (or with 0) gets 300 s. AWS, as documented:

* SetInstanceHealth (API reference): "Set to ``Unhealthy`` to have the instance be out of
  service. Amazon EC2 Auto Scaling terminates and replaces the unhealthy instance."
  "Set to ``Healthy`` to have the instance remain in service." ``ShouldRespectGracePeriod``:
  "If the Auto Scaling group of the specified instance has a ``HealthCheckGracePeriod``
  specified for the group, by default, this call respects the grace period."
* Custom health checks (user guide, "Set up a custom health check"): marking an instance
  ``Unhealthy`` "causes Amazon EC2 Auto Scaling to immediately replace it".
* "View the reason for health check failures": "By default, Amazon EC2 Auto Scaling
  creates a new scaling activity for terminating the unhealthy instance and then
  terminates it. While the instance is terminating, another scaling activity launches a
  new instance." Cause: "At 2022-05-14T20:11:53Z an instance was taken out of service in
  response to a user health-check." (AWS's example activity ran 43 s from start to end.)
* Health check grace period (user guide): "the minimum amount of time (in seconds) to
  keep a new instance in service before terminating it if it's found to be unhealthy";
  it starts when the instance enters ``InService`` (also for "instances that you manually
  attach to the group"); "Its default value is 0 seconds when
  you create an Auto Scaling group using the AWS CLI or an SDK. A value of 0 turns off
  the health check grace period." Warm pool instances have none ("there is no health
  check grace period for warm pool instances").

The emulator:

* ``Unhealthy``: ``HealthStatus`` is ``Unhealthy`` at once (DescribeAutoScalingGroups,
  DescribeAutoScalingInstances); ``replace_after_ms`` later (default 2,000; ``POST
  /moto-ext/instance-health``) the instance is taken out of service as a scale-in would
  take it, through the group's terminate lifecycle hooks (``Terminating:Wait``, the same
  ``EC2 Instance-terminate Lifecycle Action`` event, ``AutoScalingGroup`` -> ``EC2``), with
  the cause above; the group launches the replacement at once (a ``Terminating:Wait``
  instance no longer counts; through the launch hooks, in the zone with the fewest
  instances: the same zone when the group was balanced). A warm pool instance is
  terminated from the pool (``Warmed:Terminating:Wait``) and the pool refills. An instance
  still launching (``Pending``, ``Pending:Wait``, warming) is replaced once it is
  ``InService`` (checked again every ``replace_after_ms``): AWS replaces unhealthy
  ``InService`` instances.
* ``ShouldRespectGracePeriod`` true (the default) while the group's grace period since the
  instance went ``InService`` (or, not yet ``InService``, at all) is not over: the call
  succeeds and is ignored (the instance stays ``Healthy``): the emulator's reading of "the
  grace period prevents Amazon EC2 Auto Scaling from marking your newly launched instances
  ``Unhealthy``". False, or a grace period of 0: applied.
* ``Healthy`` before the replacement began: ``Healthy`` again, nothing is replaced. A
  second ``Unhealthy`` while one is pending changes nothing (one replacement). Either call
  on an instance already leaving (``Terminating*``, returning to a warm pool) succeeds and
  changes nothing.
* An instance in no group (or unknown): ``ValidationError`` ``Instance Id not found - No
  managed instance found for instance ID: i-...`` (the emulator's message, as for
  TerminateInstanceInAutoScalingGroup). A ``HealthStatus`` other than ``Healthy`` /
  ``Unhealthy``: ``ValidationError`` ``Valid instance health states are: [Healthy,
  Unhealthy]``.
* ``CreateAutoScalingGroup`` without ``HealthCheckGracePeriod`` gets 0, and 0 stays 0.

Every call applied and every replacement started is recorded (``GET
/moto-ext/instance-health``), beside the call log (``/moto-ext/calls``, action
``SetInstanceHealth``).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from moto.autoscaling import models as asm
from moto.autoscaling import responses as asr
from moto.autoscaling.exceptions import ValidationError
from moto.core.responses import EmptyResult

from . import LOCK, lifecycle, timers, utcnow, warm_pools

DEFAULT_REPLACE_AFTER_MS = 2000
MAX_REPLACE_AFTER_MS = 86_400_000
STATUSES = ("Healthy", "Unhealthy")
STILL_LAUNCHING = {"Pending", "Pending:Wait", "Pending:Proceed"}

_settings: dict[str, int] = {"replace_after_ms": DEFAULT_REPLACE_AFTER_MS}
_log: list[dict[str, Any]] = []
_seq = itertools.count(1)


def reset() -> None:
    with LOCK:
        _settings["replace_after_ms"] = DEFAULT_REPLACE_AFTER_MS
        _log.clear()


def listing() -> dict[str, Any]:
    """``GET /moto-ext/instance-health``."""
    with LOCK:
        return {"replace_after_ms": _settings["replace_after_ms"], "log": [dict(r) for r in _log]}


def configure(body: Any) -> dict[str, Any]:
    """``POST /moto-ext/instance-health`` ``{"replace_after_ms": N}``."""
    if not isinstance(body, dict) or set(body) - {"replace_after_ms"}:
        raise ValueError('give {"replace_after_ms": N}')
    if "replace_after_ms" in body:
        value = body["replace_after_ms"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPLACE_AFTER_MS:
            raise ValueError(f"replace_after_ms must be an integer from 0 to {MAX_REPLACE_AFTER_MS}")
        with LOCK:
            _settings["replace_after_ms"] = value
    return listing()


def _find(backend: Any, instance_id: str) -> tuple[Any, Any]:
    for group in backend.autoscaling_groups.values():
        state = lifecycle.find_state(group, instance_id)
        if state is not None:
            return group, state
    raise ValidationError(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")


def _leaving(state: Any) -> bool:
    return lifecycle.phase(state) in ("terminate", "warm-terminate", "reuse", "detached")


def _within_grace(group: Any, state: Any) -> bool:
    grace = int(group.health_check_grace_period or 0)
    if grace <= 0 or warm_pools.is_member(group, state):
        return False
    since = getattr(state, "ext_in_service", None)
    if since is None:  # not InService yet (or put there by moto itself, e.g. AttachInstances)
        return state.lifecycle_state != "InService"
    return time.monotonic() - since < grace


def set_instance_health(backend: Any, instance_id: str, status: str, respect: bool) -> None:
    if status not in STATUSES:
        raise ValidationError("Valid instance health states are: [Healthy, Unhealthy]")
    group, state = _find(backend, instance_id)
    record: dict[str, Any] = {
        "event": "SetInstanceHealth",
        "instance": instance_id,
        "group": group.name,
        "status": status,
        "respect_grace_period": respect,
        "time": time.time(),
    }
    pending = getattr(state, "ext_unhealthy", None)
    if _leaving(state):
        record["outcome"] = "leaving"  # already on its way out: nothing changes
    elif status == "Healthy":
        state.ext_unhealthy = None  # the scheduled replacement finds nothing to do
        state.health_status = "Healthy"
        record["outcome"] = "cancelled" if pending else "healthy"
    elif pending:
        record["outcome"] = "already-unhealthy"
    elif respect and _within_grace(group, state):
        record["outcome"] = "grace-period"
    else:
        state.ext_unhealthy = next(_seq)
        state.health_status = "Unhealthy"
        delay = _settings["replace_after_ms"]
        record["outcome"] = "scheduled"
        record["replace_in_ms"] = delay
        timers.schedule(
            delay / 1000, _replace, group.account_id, group.region, group.name, instance_id, state.ext_unhealthy
        )
    _log.append(record)


def _replace(account: str, region: str, group_name: str, instance_id: str, mark: int) -> None:
    """The timer: take the still Unhealthy instance out of service, a replacement in."""
    backend = asm.autoscaling_backends[account][region]
    group = backend.autoscaling_groups.get(group_name)
    state = lifecycle.find_state(group, instance_id) if group is not None else None
    if state is None or getattr(state, "ext_unhealthy", None) != mark or _leaving(state):
        return  # gone, Healthy again (or marked anew), or already leaving
    in_pool = warm_pools.is_member(group, state)
    if (not in_pool and state.lifecycle_state in STILL_LAUNCHING) or lifecycle.phase(state) == "warm-launch":
        timers.schedule(_settings["replace_after_ms"] / 1000, _replace, account, region, group_name, instance_id, mark)
        return
    cause = (
        f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of service in response to a "
        "user health-check."
    )
    _log.append(
        {"event": "replace", "instance": instance_id, "group": group_name, "time": time.time(), "cause": cause}
    )
    lifecycle.begin_termination(group, state, cause)
    if in_pool:
        warm_pools.maintain(group)
    else:
        group.set_desired_capacity(group.desired_capacity)  # the replacement, at once


# --------------------------------------------------------------------------- moto patches

_orig_create_group = asm.AutoScalingBackend.create_auto_scaling_group
_orig_attach = asm.AutoScalingBackend.attach_instances


def _set_instance_health_response(self: Any) -> Any:
    set_instance_health(
        self.autoscaling_backend,
        self._get_param("InstanceId") or "",
        self._get_param("HealthStatus") or "",
        self._get_bool_param("ShouldRespectGracePeriod", True),
    )
    return EmptyResult()


def _create_group(self: Any, *args: Any, **kwargs: Any) -> Any:
    """AWS's API default grace period is 0, and 0 is kept (moto: ``or 300``)."""
    group = _orig_create_group(self, *args, **kwargs)
    period = kwargs.get("health_check_period")
    group.health_check_grace_period = int(period) if period not in (None, "") else 0
    return group


def _attach_instances(self: Any, group_name: str, instance_ids: list[str]) -> None:
    """AttachInstances: InService at once (moto's); the grace period applies to "instances
    that you manually attach to the group" from then on."""
    _orig_attach(self, group_name, instance_ids)
    group = self.autoscaling_groups.get(group_name)
    for state in group.instance_states if group is not None else []:
        if state.instance.id in instance_ids and getattr(state, "ext_in_service", None) is None:
            state.ext_in_service = time.monotonic()


def install() -> None:
    asr.AutoScalingResponse.set_instance_health = _set_instance_health_response
    asm.AutoScalingBackend.create_auto_scaling_group = _create_group
    asm.AutoScalingBackend.attach_instances = _attach_instances
