"""Warm pools, as far as a load-balancer reactor relies on them.

moto 5.2.5 stores a warm pool's configuration (PutWarmPool, DescribeWarmPool with no
instances, DeleteWarmPool) and nothing else. Here the pool holds instances, kept apart
from the group's ``instance_states`` (so DescribeAutoScalingGroups' ``Instances`` never
lists them; DescribeWarmPool and DescribeAutoScalingInstances do):

* the pool is kept at its size (AWS's rule: MaxGroupPreparedCapacity, or MaxSize when
  unset or -1, minus the desired capacity; at least MinSize; 0 while the pool is being
  deleted) by launching instances into it (launch hooks, Origin EC2 / Destination
  WarmPool, ``Warmed:Pending:Wait``), which then are stopped (``Warmed:Stopped``; the
  private IP is kept), hibernated (``Warmed:Hibernated``: stopped too) or left running
  (``Warmed:Running``) per PoolState, and by terminating surplus idle ones (oldest first,
  terminate hooks, ``Warmed:Terminating:Wait``, Origin WarmPool / Destination EC2);
* scale-out draws ready warm instances first (oldest first): started, launch hooks with
  Origin WarmPool / Destination AutoScalingGroup (``Pending:Wait``), then InService; the
  rest launches cold; the pool refills;
* scale-in with ``InstanceReusePolicy.ReuseOnScaleIn`` returns instances to the pool
  through the terminate hooks (Origin AutoScalingGroup / Destination WarmPool,
  ``Warmed:Pending:Wait``, as AWS documents), then stops them there.

The hooks, tokens, heartbeats and timeouts are :mod:`lifecycle`'s; this module decides the
moves. Everything runs under the emulator's LOCK (requests and the lifecycle timer).
"""

from __future__ import annotations

from typing import Any

from moto.autoscaling import models as asm
from moto.autoscaling import responses as asr
from moto.autoscaling.exceptions import ValidationError
from moto.core.responses import ActionResult, EmptyResult

from . import events_bridge, lifecycle, utcnow, zones
from .events_bridge import LAUNCHING, TERMINATING

POOL_STATES = {"Stopped": "Warmed:Stopped", "Running": "Warmed:Running", "Hibernated": "Warmed:Hibernated"}
PENDING_DELETE = "PendingDelete"


# --------------------------------------------------------------------------- membership


def members(group: Any) -> list[Any]:
    """The pool's instances, oldest first (a copy)."""
    return list(getattr(group, "ext_warm", None) or [])


def is_member(group: Any, state: Any) -> bool:
    return any(s is state for s in getattr(group, "ext_warm", None) or [])


def discard(group: Any, state: Any) -> None:
    if getattr(group, "ext_warm", None):
        group.ext_warm = [s for s in group.ext_warm if s is not state]


def _add(group: Any, state: Any) -> None:
    if getattr(group, "ext_warm", None) is None:
        group.ext_warm = []
    group.ext_warm.append(state)


def active(group: Any) -> bool:
    pool = getattr(group, "warm_pool", None)
    return pool is not None and getattr(pool, "status", None) != PENDING_DELETE


def reuses_on_scale_in(group: Any) -> bool:
    return active(group) and bool((group.warm_pool.instance_reuse_policy or {}).get("ReuseOnScaleIn"))


def target(group: Any) -> int:
    if not active(group):
        return 0
    pool = group.warm_pool
    prepared = pool.max_group_prepared_capacity
    if prepared is None or int(prepared) < 0:
        prepared = group.max_size or 0
    size = max(0, int(prepared) - int(group.desired_capacity or 0))
    return max(size, int(pool.min_size or 0))


# --------------------------------------------------------------------------- moves


def maintain(group: Any) -> None:
    """Bring the pool to its size: launch into it, or terminate idle surplus instances."""
    if getattr(group, "ext_maintaining", False):
        return  # the outer call re-evaluates
    if group.name not in group.autoscaling_backend.autoscaling_groups:
        return
    group.ext_maintaining = True
    try:
        for _ in range(1000):
            live = [s for s in members(group) if lifecycle.phase(s) not in lifecycle.TERMINATING_PHASES]
            wanted = target(group)
            if len(live) < wanted:
                _launch_into_pool(group, wanted - len(live))
                continue
            idle = [s for s in live if lifecycle.phase(s) == "warm"]
            if len(live) > wanted and idle:
                cause = (
                    f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of the warm pool "
                    "in response to a difference between the warm pool's size and its desired size."
                )
                lifecycle.begin_termination(group, idle[0], cause)
                continue
            break
        if group.warm_pool is not None and not active(group) and not members(group):
            group.warm_pool = None  # DeleteWarmPool done
    finally:
        group.ext_maintaining = False


def _launch_into_pool(group: Any, count: int) -> None:
    before = {id(s) for s in group.instance_states}
    live = [s for s in members(group) if lifecycle.phase(s) not in lifecycle.TERMINATING_PHASES]
    zones.launch(group, count, group.get_propagated_tags(), live)  # moto's launch, no hooks
    new = [s for s in group.instance_states if id(s) not in before]
    group.instance_states = [s for s in group.instance_states if id(s) in before]
    for state in new:
        lifecycle.stamp(state)
        state.ext_start = utcnow()
        state.ext_phase = "warm-launch"
        state.lifecycle_state = "Warmed:Pending"
        _add(group, state)
    hooks = lifecycle._hooks(group, LAUNCHING)
    for state in new:
        if hooks:
            lifecycle.hold(group, state, "warm-launch", hooks)
        else:
            warmed(group, state)


def warmed(group: Any, state: Any) -> None:
    """warm-launch or reuse done: the instance rests in the pool (stopped unless Running).
    If the pool is being deleted meanwhile, it is terminated instead."""
    move = lifecycle.phase(state)
    if not active(group):
        state.ext_phase = "warm-terminate"
        state.ext_cause = (
            f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of the warm pool "
            "because the warm pool is being deleted."
        )
        lifecycle.finish_termination(group, state)
        return
    pool_state = group.warm_pool.pool_state or "Stopped"
    state.lifecycle_state = "Warmed:Pending:Proceed"
    ec2 = group.autoscaling_backend.ec2_backend
    if pool_state == "Running":
        if state.instance.state != "running":
            ec2.start_instances([state.instance.id])
    elif state.instance.state != "stopped":
        ec2.stop_instances([state.instance.id])
    state.lifecycle_state = POOL_STATES.get(pool_state, "Warmed:Stopped")
    state.ext_phase = "warm"
    if move == "reuse":
        # AWS: "returning instances to the warm pool can also generate EC2 Instance
        # Terminate Successful events ... WarmPool as the value for Destination".
        origin, destination = lifecycle.route(group, "reuse")
        events_bridge.activity_result(
            group,
            state,
            "Terminate",
            True,
            getattr(state, "ext_cause", "") or f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was returned to the warm pool.",
            state.ext_start,
            origin=origin,
            destination=destination,
        )
    if move == "warm-launch":
        origin, destination = lifecycle.route(group, "warm-launch")
        cause = (
            f"At {state.ext_start:%Y-%m-%dT%H:%M:%SZ} an instance was launched into the warm pool "
            "in response to a difference between the warm pool's size and its desired size."
        )
        events_bridge.activity_result(
            group, state, "Launch", True, cause, state.ext_start, origin=origin, destination=destination
        )
    maintain(group)


def draw(group: Any, count: int) -> int:
    """Scale-out: up to ``count`` ready warm instances join the group. Returns how many."""
    if not active(group):
        return 0
    ready = [s for s in members(group) if lifecycle.phase(s) == "warm"][:count]
    hooks = lifecycle._hooks(group, LAUNCHING)
    ec2 = group.autoscaling_backend.ec2_backend
    for state in ready:
        discard(group, state)
        if state.instance.state != "running":
            ec2.start_instances([state.instance.id])
        state.ext_start = utcnow()
        state.ext_phase = "warm-start"
        state.lifecycle_state = "Pending"
        group.instance_states.append(state)
        group.instance_states.sort(key=lifecycle.launch_order)  # keeps its place: oldest first
        if hooks:
            lifecycle.hold(group, state, "warm-start", hooks)
        else:
            lifecycle.launch_succeeded(group, state)
    return len(ready)


def begin_reuse(group: Any, state: Any, cause: str) -> None:
    """Scale-in with ReuseOnScaleIn: the instance leaves the group for the pool through the
    terminate hooks."""
    lifecycle._cancel_instance(group, state.instance.id)
    group.instance_states = [s for s in group.instance_states if s is not state]
    _add(group, state)
    state.ext_start = utcnow()
    state.ext_cause = cause
    state.ext_phase = "reuse"
    state.lifecycle_state = "Warmed:Pending"
    hooks = lifecycle._hooks(group, TERMINATING)
    if hooks:
        lifecycle.hold(group, state, "reuse", hooks)
    else:
        warmed(group, state)


def force_delete(group: Any) -> None:
    """Group deletion or DeleteWarmPool with ForceDelete: every pool instance is terminated
    now, its pending lifecycle actions ended (by "superseded")."""
    if group.warm_pool is not None:
        group.warm_pool.status = PENDING_DELETE
    doomed = members(group)
    for state in doomed:  # all marked first: nothing of the pool is idle while it empties
        state.ext_phase = "warm-terminate"
        state.ext_cause = (
            f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of the warm pool "
            "because the warm pool is being deleted."
        )
    for state in doomed:
        lifecycle.finish_termination(group, state)
    group.warm_pool = None


# --------------------------------------------------------------------------- API


def _group(backend: Any, name: str) -> Any:
    group = backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
    return group


def _int(value: Any, name: str, low: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be an integer") from None
    if number < low:
        raise ValidationError(f"{name} must be at least {low}")
    return number


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _put_warm_pool(self: Any) -> Any:
    params = self._get_params()
    group = _group(self.autoscaling_backend, params.get("AutoScalingGroupName"))
    if (group.mixed_instances_policy or {}).get("LaunchTemplate", {}).get("Overrides"):
        raise ValidationError("You can't add a warm pool to an Auto Scaling group that has a mixed instances policy.")
    pool_state = params.get("PoolState") or "Stopped"
    if pool_state not in POOL_STATES:
        raise ValidationError(f"PoolState must be one of {', '.join(POOL_STATES)}")
    prepared = _int(params.get("MaxGroupPreparedCapacity"), "MaxGroupPreparedCapacity", -1)
    reuse = params.get("InstanceReusePolicy")
    group.put_warm_pool(
        max_group_prepared_capacity=None if prepared == -1 else prepared,
        min_size=_int(params.get("MinSize"), "MinSize", 0),
        pool_state=pool_state,
        instance_reuse_policy=(
            {"ReuseOnScaleIn": _bool((reuse or {}).get("ReuseOnScaleIn"))} if isinstance(reuse, dict) else None
        ),
    )
    group.warm_pool.status = None
    maintain(group)
    return EmptyResult()


def _describe_warm_pool(self: Any) -> ActionResult:
    group = _group(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
    max_records = int(self._get_param("MaxRecords") or 50)
    start = int(self._get_param("NextToken") or 0)
    pool = members(group)
    result: dict[str, Any] = {"WarmPoolConfiguration": group.warm_pool, "Instances": pool[start : start + max_records]}
    if start + max_records < len(pool):
        result["NextToken"] = str(start + max_records)
    return ActionResult(result)


def _delete_warm_pool(self: Any) -> Any:
    group = _group(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
    if group.warm_pool is None:
        return EmptyResult()
    if _bool(self._get_param("ForceDelete")):
        force_delete(group)
    else:
        group.warm_pool.status = PENDING_DELETE  # shrinks to 0 through the terminate hooks
        maintain(group)
    return EmptyResult()


def _warm_pool_size(self: Any) -> int | None:
    return len(members(self)) if getattr(self, "warm_pool", None) is not None else None


def install() -> None:
    asr.AutoScalingResponse.put_warm_pool = _put_warm_pool
    asr.AutoScalingResponse.describe_warm_pool = _describe_warm_pool
    asr.AutoScalingResponse.delete_warm_pool = _delete_warm_pool
    asm.FakeAutoScalingGroup.warm_pool_size = property(_warm_pool_size)
