"""Lifecycle hooks that hold instances, as AWS Auto Scaling does.

moto stores lifecycle hooks but ignores them: instances are InService or gone at once, and
CompleteLifecycleAction / RecordLifecycleActionHeartbeat are not implemented. The product's
whole point is to act while an instance waits in ``Pending:Wait`` / ``Terminating:Wait``, so
this module patches moto's Auto Scaling models:

* launches (group creation, SetDesiredCapacity, UpdateAutoScalingGroup, replacements) go
  through :func:`_on_launched`: with a launch hook the instance waits in ``Pending:Wait``,
  otherwise it is InService at once;
* every removal (scale-in, TerminateInstanceInAutoScalingGroup) goes through
  :func:`begin_termination`: with a terminate hook the instance waits in ``Terminating:Wait``
  (still in the group, EC2 state running), otherwise it is terminated and removed at once;
* held actions end by CompleteLifecycleAction (token or instance id), or by the hook's
  DefaultResult when the heartbeat timeout expires (RecordLifecycleActionHeartbeat restarts
  it), checked by one background timer thread;
* every transition emits the EventBridge events of :mod:`events_bridge`;
* EC2 reclaiming an instance (:func:`reclaim`, Spot interruptions) takes it out at once;
* groups with a warm pool (:mod:`warm_pools`) also move instances into, out of and back to
  the pool through the same hooks.

Every instance carries the move it is making (``ext_phase``): ``launch`` (EC2 -> group),
``warm-launch`` (EC2 -> warm pool), ``warm-start`` (warm pool -> group), ``terminate``
(group -> EC2), ``reuse`` (group -> warm pool, scale-in with ReuseOnScaleIn),
``warm-terminate`` (warm pool -> EC2), ``warm`` (idle in the pool) or ``in-service``. The
phase decides
the wait state, the hooks' transition, the Origin/Destination and what completion does.

Launches are spread over the group's Availability Zones and scale-in takes from the fullest
zone first, oldest first within it (:mod:`zones`), without moto's set() reshuffle.
Deviations from AWS: any heartbeat timeout is accepted (tests use seconds); a launch ABANDON
terminates without running terminate hooks; ForceDelete semantics for DeleteAutoScalingGroup.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling import models as asm
from moto.autoscaling import responses as asr
from moto.autoscaling.exceptions import ValidationError
from moto.core.responses import EmptyResult

from . import LOCK, events_bridge, timers, utcnow, warm_pools, zones
from .events_bridge import LAUNCHING, TERMINATING

# Lifecycle states that count toward the desired capacity.
COUNTED = {"Pending", "Pending:Wait", "Pending:Proceed", "InService"}
RESULTS = {"CONTINUE", "ABANDON"}
GLOBAL_TIMEOUT_MAX = 172800  # 48 h, or 100 x heartbeat timeout if smaller

# phase -> (hook transition, wait state, Origin, Destination)
PHASES = {
    "launch": (LAUNCHING, "Pending:Wait", "EC2", "AutoScalingGroup"),
    "warm-start": (LAUNCHING, "Pending:Wait", "WarmPool", "AutoScalingGroup"),
    "warm-launch": (LAUNCHING, "Warmed:Pending:Wait", "EC2", "WarmPool"),
    "terminate": (TERMINATING, "Terminating:Wait", "AutoScalingGroup", "EC2"),
    # AWS: an instance returning to the warm pool waits in Warmed:Pending:Wait for the
    # EC2_INSTANCE_TERMINATING hooks.
    "reuse": (TERMINATING, "Warmed:Pending:Wait", "AutoScalingGroup", "WarmPool"),
    "warm-terminate": (TERMINATING, "Warmed:Terminating:Wait", "WarmPool", "EC2"),
}
TERMINATING_PHASES = {"terminate", "warm-terminate"}


def phase(state: Any) -> str:
    return getattr(state, "ext_phase", "launch")


def route(group: Any, move: str) -> tuple[str | None, str | None]:
    """Origin/Destination for events. AWS's event reference (ec2-auto-scaling-event-reference)
    shows them on every lifecycle action and Launch/Terminate Successful/Unsuccessful example,
    for groups with or without a warm pool."""
    return PHASES[move][2], PHASES[move][3]


@dataclass
class Action:
    token: str
    account: str
    region: str
    group: str
    hook: str
    instance_id: str
    transition: str
    heartbeat: float
    default_result: str
    deadline: float
    global_deadline: float
    record: dict[str, Any] = field(default_factory=dict)


_actions: dict[str, Action] = {}  # token -> pending action
_log: list[dict[str, Any]] = []  # every action, in creation order
_stop = threading.Event()
_launch_seq = itertools.count(1)


def reset() -> None:
    with LOCK:
        _actions.clear()
        _log.clear()


def snapshot() -> list[dict[str, Any]]:
    with LOCK:
        return [dict(r) for r in _log]


# --------------------------------------------------------------------------- helpers


def _hooks(group: Any, transition: str) -> list[Any]:
    return [
        h
        for h in group.autoscaling_backend.lifecycle_hooks.values()
        if h.auto_scaling_group_name == group.name and h.lifecycle_transition == transition
    ]


def _pending_for(account: str, region: str, group: str, instance_id: str) -> list[Action]:
    return [
        a
        for a in _actions.values()
        if (a.account, a.region, a.group, a.instance_id) == (account, region, group, instance_id)
    ]


def _close(action: Action, result: str, by: str) -> None:
    _actions.pop(action.token, None)
    action.record.update(result=result, by=by, time=time.time())


def _cancel_instance(group: Any, instance_id: str, by: str = "superseded") -> None:
    for a in _pending_for(group.account_id, group.region, group.name, instance_id):
        _close(a, "ABANDON", by)


def hold(group: Any, state: Any, move: str, hooks: list[Any]) -> None:
    """Put the instance in the move's wait state, one pending action per hook."""
    transition, wait_state, origin, destination = PHASES[move]
    state.ext_phase = move
    state.lifecycle_state = wait_state
    event_origin, event_destination = route(group, move)
    now = time.monotonic()
    for hook in hooks:
        token = str(uuid.uuid4())
        heartbeat = float(hook.heartbeat_timeout or 3600)
        record = {
            "group": group.name,
            "hook": hook.name,
            "instance": state.instance.id,
            "transition": transition,
            "origin": origin,
            "destination": destination,
            "result": None,
            "token": token,
            "by": None,
            "time": None,
            "started": time.time(),
        }
        _log.append(record)
        _actions[token] = Action(
            token=token,
            account=group.account_id,
            region=group.region,
            group=group.name,
            hook=hook.name,
            instance_id=state.instance.id,
            transition=transition,
            heartbeat=heartbeat,
            default_result=(hook.default_result or "ABANDON").upper(),
            deadline=now + heartbeat,
            global_deadline=now + min(GLOBAL_TIMEOUT_MAX, 100 * heartbeat),
            record=record,
        )
        events_bridge.lifecycle_action(group, hook, state.instance.id, token, event_origin, event_destination)


def remove_state(group: Any, state: Any) -> None:
    """Out of the group and the warm pool; EC2-terminated."""
    group.instance_states = [s for s in group.instance_states if s is not state]
    warm_pools.discard(group, state)
    instance = state.instance
    if instance.state != "terminated":
        group.autoscaling_backend.ec2_backend.terminate_instances([instance.id])


def _refresh_load_balancers(group: Any) -> None:
    backend = group.autoscaling_backend
    if group.name in backend.autoscaling_groups:
        backend.update_attached_elbs(group.name)
        backend.update_attached_target_groups(group.name)


def find_state(group: Any, instance_id: str) -> Any | None:
    """A member of the group or of its warm pool."""
    return next(
        (s for s in list(group.instance_states) + warm_pools.members(group) if s.instance.id == instance_id),
        None,
    )


# --------------------------------------------------------------------------- transitions


def stamp(state: Any) -> None:
    """Launch order (scale-in takes the oldest first, also after a stay in the warm pool)."""
    state.ext_seq = next(_launch_seq)


def launch_order(state: Any) -> int:
    return getattr(state, "ext_seq", 0)


def _on_launched(group: Any, states: list[Any]) -> None:
    """Instances launched straight into the group (cold start)."""
    hooks = _hooks(group, LAUNCHING)
    for state in states:
        stamp(state)
        state.ext_start = utcnow()
        state.ext_phase = "launch"
        if hooks:
            hold(group, state, "launch", hooks)
        else:
            launch_succeeded(group, state)


def launch_succeeded(group: Any, state: Any) -> None:
    """launch / warm-start done: InService."""
    move = phase(state)
    state.lifecycle_state = "InService"
    state.ext_phase = "in-service"
    state.ext_in_service = time.monotonic()  # the health check grace period starts (health.py)
    origin, destination = route(group, move)
    how = "started from the warm pool" if move == "warm-start" else "started"
    cause = (
        f"At {state.ext_start:%Y-%m-%dT%H:%M:%SZ} an instance was {how} in response to a "
        f"difference between desired and actual capacity, increasing the capacity."
    )
    events_bridge.activity_result(
        group, state, "Launch", True, cause, state.ext_start, origin=origin, destination=destination
    )


def abandon_launch(group: Any, state: Any) -> None:
    """A launch hook ABANDONed (or timed out so): terminated, Launch Unsuccessful; the group
    (or the pool) is short again and launches a replacement, as AWS does."""
    move = phase(state)
    origin, destination = route(group, move)
    _cancel_instance(group, state.instance.id)
    remove_state(group, state)
    events_bridge.activity_result(
        group,
        state,
        "Launch",
        False,
        "Lifecycle action ABANDON for launching instance; the instance was terminated.",
        getattr(state, "ext_start", None),
        message="Instance failed to complete user's Lifecycle Action: Lifecycle Action with "
        "token was abandoned: Lifecycle Action Completed with ABANDON Result",
        origin=origin,
        destination=destination,
    )
    if group.name in group.autoscaling_backend.autoscaling_groups:
        group.set_desired_capacity(group.desired_capacity)  # refills the pool too


def begin_termination(group: Any, state: Any, cause: str) -> None:
    """Terminate a group member (terminate) or a warm pool member (warm-terminate),
    through the terminate hooks unless the group is being force-deleted."""
    if phase(state) in TERMINATING_PHASES:
        return
    move = "warm-terminate" if warm_pools.is_member(group, state) else "terminate"
    _cancel_instance(group, state.instance.id)
    state.ext_start = utcnow()
    state.ext_cause = cause
    state.ext_phase = move
    hooks = [] if getattr(group, "ext_force_delete", False) else _hooks(group, TERMINATING)
    if hooks:
        hold(group, state, move, hooks)
    else:
        finish_termination(group, state)


def finish_termination(group: Any, state: Any) -> None:
    move = phase(state) if phase(state) in TERMINATING_PHASES else (
        "warm-terminate" if warm_pools.is_member(group, state) else "terminate"
    )
    origin, destination = route(group, move)
    _cancel_instance(group, state.instance.id)
    remove_state(group, state)
    cause = getattr(state, "ext_cause", "") or (
        f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of service."
    )
    events_bridge.activity_result(
        group,
        state,
        "Terminate",
        True,
        cause,
        getattr(state, "ext_start", None),
        origin=origin,
        destination=destination,
    )
    _refresh_load_balancers(group)
    if move == "warm-terminate":
        warm_pools.maintain(group)


def _resolve(action: Action, result: str, by: str) -> None:
    """Apply a completed (or expired) action to its instance."""
    _close(action, result, by)
    backend = asm.autoscaling_backends[action.account][action.region]
    group = backend.autoscaling_groups.get(action.group)
    state = find_state(group, action.instance_id) if group else None
    if state is None:
        return
    others = _pending_for(action.account, action.region, action.group, action.instance_id)
    move = phase(state)
    if move in ("launch", "warm-start"):
        if result == "ABANDON":
            abandon_launch(group, state)
        elif not others:
            launch_succeeded(group, state)
            _refresh_load_balancers(group)
    elif move == "warm-launch":
        if result == "ABANDON":
            abandon_launch(group, state)
        elif not others:
            warm_pools.warmed(group, state)
    elif move == "reuse":
        # Both results end the wait; the instance is kept (as CONTINUE and ABANDON both let a
        # terminating instance terminate).
        if result == "ABANDON" or not others:
            warm_pools.warmed(group, state)
    elif result == "ABANDON" or not others:
        finish_termination(group, state)


def replace_interrupted(account: str, region: str, instance_id: str, cause: str) -> None:
    """Auto Scaling takes an interrupted (Spot) instance out of service: terminate hooks, and
    a replacement at once (the instance no longer counts toward the desired capacity)."""
    backend = asm.autoscaling_backends[account][region]
    for group in list(backend.autoscaling_groups.values()):
        state = find_state(group, instance_id)
        if state is not None:
            if phase(state) not in TERMINATING_PHASES:
                begin_termination(group, state, cause)
                group.set_desired_capacity(group.desired_capacity)
            return


def reclaim(account: str, region: str, instance_id: str, ec2_action: str = "terminate") -> None:
    """EC2 takes the instance back whatever Auto Scaling is doing. A group (or warm pool)
    member leaves at once (a pending lifecycle action of it ends with by "vanished"), is
    terminated (Auto Scaling replaces a stopped instance too), and the group launches a
    replacement if below desired. Outside any group, ``stop``/``hibernate`` only stop it."""
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[account][region]
    try:
        instance = ec2.get_instance(instance_id)
    except Exception:
        return
    if instance.state == "terminated":
        return
    backend = asm.autoscaling_backends[account][region]
    for group in list(backend.autoscaling_groups.values()):
        state = find_state(group, instance_id)
        if state is None:
            continue
        _cancel_instance(group, instance_id, "vanished")
        state.ext_cause = (
            f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of service in response to "
            "an EC2 health check indicating it has been terminated or stopped."
        )
        state.ext_start = getattr(state, "ext_start", None) or utcnow()
        finish_termination(group, state)
        group.set_desired_capacity(group.desired_capacity)
        return
    if ec2_action == "terminate":
        ec2.terminate_instances([instance_id])
    else:
        ec2.stop_instances([instance_id])


def _find_action(backend: Any, group: str, hook: str, token: str | None, instance_id: str | None) -> Action:
    def ours(a: Action) -> bool:
        return (a.account, a.region, a.group, a.hook) == (
            backend.account_id,
            backend.region_name,
            group,
            hook,
        )

    if token:
        action = _actions.get(token)
        if action and ours(action) and (not instance_id or action.instance_id == instance_id):
            return action
        raise ValidationError(f"No active Lifecycle Action found with token {token}")
    if instance_id:
        for action in _actions.values():
            if ours(action) and action.instance_id == instance_id:
                return action
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")
    raise ValidationError("A LifecycleActionToken or an InstanceId must be given")


def _tick() -> None:
    now = time.monotonic()
    with LOCK:
        for action in list(_actions.values()):
            if action.token in _actions and now >= min(action.deadline, action.global_deadline):
                _resolve(action, action.default_result, "timeout")


def _timer_loop() -> None:
    while not _stop.wait(0.05):
        try:
            _tick()
            timers.run_due()
        except Exception as exc:  # never let the timer die
            print(f"emulator: lifecycle timer: {exc!r}", flush=True)


# --------------------------------------------------------------------------- moto patches

_orig_replace = asm.FakeAutoScalingGroup.replace_autoscaling_group_instances
_orig_set_desired = asm.FakeAutoScalingGroup.set_desired_capacity
_orig_delete_group = asm.AutoScalingBackend.delete_auto_scaling_group
_orig_describe_instances = asm.AutoScalingBackend.describe_auto_scaling_instances
_orig_create_group_response = asr.AutoScalingResponse.create_auto_scaling_group
_orig_put_hook_response = asr.AutoScalingResponse.put_lifecycle_hook


def _replace_instances(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
    before = {id(s) for s in self.instance_states}
    counted = [s for s in self.instance_states if s.lifecycle_state in COUNTED]
    zones.launch(self, count_needed, propagated_tags, counted)  # the zone with the fewest first
    _on_launched(self, [s for s in self.instance_states if id(s) not in before])


def _set_desired_capacity(self: Any, new_capacity: int | None) -> None:
    policy = self.mixed_instances_policy or {}
    if policy.get("LaunchTemplate", {}).get("Overrides"):
        return _orig_set_desired(self, new_capacity)  # weighted capacity: moto's own logic
    self.desired_capacity = self.min_size if new_capacity is None else new_capacity
    counted = [s for s in self.instance_states if s.lifecycle_state in COUNTED]
    delta = (self.desired_capacity or 0) - len(counted)
    if delta > 0:
        delta -= warm_pools.draw(self, delta)  # warm instances first
        if delta > 0:
            self.replace_autoscaling_group_instances(delta, self.get_propagated_tags())
    elif delta < 0:
        # The zone with the most instances first, oldest first in it (instance_states is
        # in launch order); in a group with one zone: oldest first.
        victims = zones.scale_in_victims(counted, -delta)
        reuse = warm_pools.reuses_on_scale_in(self)
        for state in victims:
            cause = (
                f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} a user request explicitly set group desired "
                f"capacity changing the desired capacity from {len(counted)} to "
                f"{self.desired_capacity}. An instance was taken out of service in response to "
                f"a difference between desired and actual capacity, shrinking the capacity."
            )
            if reuse:
                warm_pools.begin_reuse(self, state, cause)
            else:
                begin_termination(self, state, cause)
    warm_pools.maintain(self)
    _refresh_load_balancers(self)


def _terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
    found = next(
        ((g, s) for g in self.autoscaling_groups.values() if (s := find_state(g, instance_id)) is not None),
        None,
    )
    if found is None:
        raise ValidationError(
            f"Instance Id not found - No managed instance found for instance ID: {instance_id}"
        )
    group, state = found
    original = group.desired_capacity
    in_group = not warm_pools.is_member(group, state)  # a warm instance never counted
    if should_decrement and in_group and phase(state) not in TERMINATING_PHASES:
        if group.min_size is not None and original - 1 < group.min_size:
            raise ValidationError(
                f"Currently, desiredSize equals minSize ({group.min_size}). Terminating instance "
                "without replacement will violate group's min size constraint. Either set "
                "shouldDecrementDesiredCapacity flag to false or lower group's min size."
            )
        group.desired_capacity = original - 1
    activity = asm.TerminateInstanceActivity(state.instance, original)
    begin_termination(group, state, activity.cause)
    group.set_desired_capacity(group.desired_capacity)  # replacement unless decremented
    return activity


def _notify_terminate_instances(self: Any, instance_ids: list[str]) -> None:
    """EC2 TerminateInstances on group or warm pool members: gone now, replaced if below
    desired (the pool refilled)."""
    for group in list(self.autoscaling_groups.values()):
        gone = [s for s in list(group.instance_states) + warm_pools.members(group) if s.instance.id in instance_ids]
        for state in gone:
            move = "warm-terminate" if warm_pools.is_member(group, state) else "terminate"
            origin, destination = route(group, move)
            _cancel_instance(group, state.instance.id)
            group.instance_states = [s for s in group.instance_states if s is not state]
            warm_pools.discard(group, state)
            events_bridge.activity_result(
                group,
                state,
                "Terminate",
                True,
                f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of service in "
                "response to an EC2 instance status check failure.",
                utcnow(),
                origin=origin,
                destination=destination,
            )
        if gone:
            group.set_desired_capacity(group.desired_capacity)


def _delete_group(self: Any, group_name: str) -> None:
    group = self.autoscaling_groups.get(group_name)
    if group is not None:
        group.ext_force_delete = True
        warm_pools.force_delete(group)
        for state in list(group.instance_states):
            if phase(state) in TERMINATING_PHASES:
                finish_termination(group, state)
            else:
                _cancel_instance(group, state.instance.id)
    _orig_delete_group(self, group_name)
    if group_name not in self.autoscaling_groups:
        for key, hook in list(self.lifecycle_hooks.items()):
            if hook.auto_scaling_group_name == group_name:
                del self.lifecycle_hooks[key]


def _describe_instances(self: Any, instance_ids: list[str]) -> list[Any]:
    """DescribeAutoScalingInstances also lists warm pool instances (Warmed:* states)."""
    found = _orig_describe_instances(self, instance_ids)
    for group in self.autoscaling_groups.values():
        found.extend(s for s in warm_pools.members(group) if not instance_ids or s.instance.id in instance_ids)
    return found


def _detach_instances(self: Any, group_name: str, instance_ids: list[str], should_decrement: bool) -> Any:
    """DetachInstances: the instances leave the group at once (no lifecycle hook; EC2 keeps
    them running), ``EC2 Instance Detach Successful`` per instance, then the group launches
    replacements unless the desired capacity was decremented. Only InService (or Standby)
    members can be detached; decrementing below MinSize is refused, as for
    TerminateInstanceInAutoScalingGroup."""
    group = self.autoscaling_groups.get(group_name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {group_name} not found")
    if len(instance_ids) > 20:  # "You can specify up to 20 instances." (DetachInstances)
        raise ValidationError(
            "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: "
            "Member must have length less than or equal to 20"
        )
    states = []
    for instance_id in dict.fromkeys(instance_ids):
        state = next((s for s in group.instance_states if s.instance.id == instance_id), None)
        if state is None:
            raise ValidationError(f"The instance {instance_id} is not part of Auto Scaling group {group_name}.")
        if state.lifecycle_state not in ("InService", "Standby"):
            raise ValidationError(f"The instance {instance_id} is not in InService or Standby.")
        states.append(state)
    original = group.desired_capacity or 0
    if should_decrement and group.min_size is not None and original - len(states) < group.min_size:
        raise ValidationError(
            f"Currently, desiredSize equals minSize ({group.min_size}). Detaching instance without "
            "replacement will violate group's min size constraint. Either set "
            "shouldDecrementDesiredCapacity flag to false or lower group's min size."
        )
    activities = []
    for state in states:
        instance = state.instance
        activity = asm.DetachInstanceActivity(instance)
        # AWS's DetachInstances example: "At 2015-04-12T15:02:16Z instance i-93633f9b was
        # detached in response to a user request, shrinking the capacity from 2 to 1."
        activity.cause = f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} instance {instance.id} was detached in response to a user request"
        if should_decrement:
            activity.cause += f", shrinking the capacity from {original} to {original - len(states)}."
        else:
            activity.cause += "."
        activities.append(activity)
        _cancel_instance(group, instance.id)
        group.instance_states = [s for s in group.instance_states if s is not state]
        state.ext_phase = "detached"
        state.lifecycle_state = "Detached"
        self.ec2_backend.delete_tags([instance.id], {asm.ASG_NAME_TAG: group.name})
        origin, destination = route(group, "terminate")
        events_bridge.activity_result(
            group,
            state,
            "Detach",
            True,
            activity.cause,
            utcnow(),
            origin=origin,
            destination=destination,
            activity_id=activity.activity_id,
        )
    if should_decrement:
        group.desired_capacity = original - len(states)
    group.set_desired_capacity(group.desired_capacity)  # replacements unless decremented
    _refresh_load_balancers(group)
    return activities


def _create_group_response(self: Any) -> Any:
    # Hooks given at creation must exist before the first instances launch.
    name = self._get_param("AutoScalingGroupName")
    specs = self._get_param("LifecycleHookSpecificationList", []) or []
    created = []
    for spec in specs:
        hook = self.autoscaling_backend.create_lifecycle_hook(
            name=spec.get("LifecycleHookName"),
            as_name=name,
            transition=spec.get("LifecycleTransition"),
            timeout=int(spec["HeartbeatTimeout"]) if spec.get("HeartbeatTimeout") else None,
            result=spec.get("DefaultResult"),
        )
        hook.notification_metadata = spec.get("NotificationMetadata")
        created.append(hook)
    try:
        return _orig_create_group_response(self)
    except Exception:
        for hook in created:
            self.autoscaling_backend.delete_lifecycle_hook(name, hook.name)
        raise


def _put_hook_response(self: Any) -> Any:
    result = _orig_put_hook_response(self)
    group, name = self._get_param("AutoScalingGroupName"), self._get_param("LifecycleHookName")
    hook = self.autoscaling_backend.lifecycle_hooks.get(f"{group}_{name}")
    if hook is not None:
        hook.notification_metadata = self._get_param("NotificationMetadata")
    return result


def _complete_lifecycle_action(self: Any) -> Any:
    result = (self._get_param("LifecycleActionResult") or "").upper()
    if result not in RESULTS:
        raise ValidationError(
            f"1 validation error detected: Value '{result}' at 'lifecycleActionResult' failed to "
            "satisfy constraint: Member must be CONTINUE or ABANDON"
        )
    action = _find_action(
        self.autoscaling_backend,
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    _resolve(action, result, "api")
    return EmptyResult()


def _record_heartbeat(self: Any) -> Any:
    action = _find_action(
        self.autoscaling_backend,
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    action.deadline = time.monotonic() + action.heartbeat
    action.record["heartbeats"] = action.record.get("heartbeats", 0) + 1
    return EmptyResult()


def install() -> None:
    asm.FakeAutoScalingGroup.replace_autoscaling_group_instances = _replace_instances
    asm.FakeAutoScalingGroup.set_desired_capacity = _set_desired_capacity
    asm.AutoScalingBackend.terminate_instance = _terminate_instance
    asm.AutoScalingBackend.notify_terminate_instances = _notify_terminate_instances
    asm.AutoScalingBackend.delete_auto_scaling_group = _delete_group
    asm.AutoScalingBackend.detach_instances = _detach_instances
    asm.AutoScalingBackend.describe_auto_scaling_instances = _describe_instances
    warm_pools.install()
    asr.AutoScalingResponse.create_auto_scaling_group = _create_group_response
    asr.AutoScalingResponse.put_lifecycle_hook = _put_hook_response
    asr.AutoScalingResponse.complete_lifecycle_action = _complete_lifecycle_action
    asr.AutoScalingResponse.record_lifecycle_action_heartbeat = _record_heartbeat
    threading.Thread(target=_timer_loop, name="moto-ext-lifecycle", daemon=True).start()


def stop() -> None:
    _stop.set()
