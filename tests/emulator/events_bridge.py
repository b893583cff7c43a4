"""AWS service events on EventBridge: the events moto never emits.

The reactor is driven by EventBridge events with ``source: aws.autoscaling``; Run Command
(``aws.ssm``) and EC2 (``aws.ec2``: spot interruption warnings, rebalance recommendations)
events are emitted too. This module builds them in AWS's shapes and hands them to moto's
own EventBridge backend (default bus of the account and region), so rules with SQS targets
and event patterns deliver them exactly as they would deliver a PutEvents entry.
Every emitted event is also kept in order for ``GET /moto-ext/events``.
"""

from __future__ import annotations

import copy
import sys
import uuid
from typing import Any

from . import LOCK, iso, utcnow

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"

_emitted: list[dict[str, Any]] = []


def reset() -> None:
    with LOCK:
        _emitted.clear()


def emitted() -> list[dict[str, Any]]:
    with LOCK:
        return copy.deepcopy(_emitted)


def instance_arn(account: str, region: str, instance_id: str) -> str:
    from moto.utilities.utils import get_partition

    return f"arn:{get_partition(region)}:ec2:{region}:{account}:instance/{instance_id}"


def put(
    account: str,
    region: str,
    source: str,
    detail_type: str,
    resources: list[str],
    detail: dict[str, Any],
) -> None:
    """Emit one event on the default bus of ``account``/``region``. Called under LOCK,
    after the state the event reports is in place (a consumer reads it at once)."""
    from moto.core.utils import unix_time
    from moto.events.models import events_backends

    now = utcnow()
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        # moto's SQS target turns a unix time into "2026-11-20T10:00:00Z".
        "time": unix_time(now.replace(tzinfo=None)),
        "region": region,
        "resources": list(resources),
        "detail": detail,
    }
    record = copy.deepcopy(event)
    record["time"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    record["emitted"] = now.timestamp()  # the extension's own field: emission, epoch seconds
    _emitted.append(record)
    try:
        bus = events_backends[account][region].event_buses.get("default")
        for rule in list(bus.rules.values()) if bus else []:
            if getattr(rule, "state", "ENABLED") != "ENABLED" or not _may_match(rule, source):
                continue
            if rule.event_pattern is not None and not rule.event_pattern.matches_event(event):
                continue
            # Without an InputTransformer AWS delivers the whole event; moto's default
            # template would drop "account", so only transform when a target asks for it.
            transform = any("InputTransformer" in t for t in rule.targets)
            msg = copy.deepcopy(event)
            if transform:
                msg["ingestion-time"] = msg["time"]
            rule.send_to_targets(msg, transform_input=transform)
    except Exception as exc:  # delivery is best effort, like AWS's
        print(f"emulator: event delivery failed: {exc!r}", file=sys.stderr)


def _may_match(rule: Any, source: str) -> bool:
    """False when the rule's pattern names the event sources it takes as plain strings
    and `source` is not one of them: what moto's ``matches_event`` would conclude, without
    its JSON round trip and flattening of the event. Each Run Command invocation puts two
    or three events, each looked at by every rule of the bus: with the control path's
    rules that matching was about half of what a SendCommand to 50 forwarded hosts cost
    the emulator (py-spy). Any other pattern (content filters, ``$or``) is left to moto."""
    pattern = rule.event_pattern.get_pattern() if rule.event_pattern else None
    wanted = pattern.get("source") if isinstance(pattern, dict) and "$or" not in pattern else None
    if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
        return True
    return source in wanted


def _put(group: Any, detail_type: str, detail: dict[str, Any], instance_id: str | None = None) -> None:
    # Lifecycle actions name the group; activity results the group and the instance.
    resources = [group.arn]
    if instance_id:
        resources.append(instance_arn(group.account_id, group.region, instance_id))
    put(group.account_id, group.region, "aws.autoscaling", detail_type, resources, detail)


def _route(detail: dict[str, Any], origin: str | None, destination: str | None) -> None:
    # AWS's event reference shows Origin/Destination on every lifecycle action and
    # activity result example (EC2, AutoScalingGroup or WarmPool), warm pool or not.
    if origin and destination:
        detail["Origin"] = origin
        detail["Destination"] = destination


def lifecycle_action(
    group: Any,
    hook: Any,
    instance_id: str,
    token: str,
    origin: str | None = None,
    destination: str | None = None,
) -> None:
    transition = hook.lifecycle_transition
    kind = "launch" if transition == LAUNCHING else "terminate"
    detail = {
        "LifecycleActionToken": token,
        "AutoScalingGroupName": group.name,
        "LifecycleHookName": hook.name,
        "EC2InstanceId": instance_id,
        "LifecycleTransition": transition,
    }
    metadata = getattr(hook, "notification_metadata", None)
    if metadata is not None:
        detail["NotificationMetadata"] = metadata
    _route(detail, origin, destination)
    _put(group, f"EC2 Instance-{kind} Lifecycle Action", detail)


def activity_result(
    group: Any,
    state: Any,
    kind: str,
    successful: bool,
    cause: str,
    start: Any,
    message: str = "",
    origin: str | None = None,
    destination: str | None = None,
    activity_id: str | None = None,
) -> None:
    """``EC2 Instance Launch|Terminate|Detach Successful|Unsuccessful``."""
    instance = state.instance
    verb = {"Launch": "Launching a new", "Terminate": "Terminating", "Detach": "Detaching"}[kind]
    where = " into warm pool" if destination == "WarmPool" else ""
    where = " from warm pool" if origin == "WarmPool" else where
    description = f"{verb} EC2 instance{where}: {instance.id}"
    if kind == "Terminate" and destination == "WarmPool":
        description = f"Returning EC2 instance to warm pool: {instance.id}"
    detail = {
        "StatusCode": "InProgress" if successful else "Failed",
        "Description": description,
        "AutoScalingGroupName": group.name,
        "ActivityId": activity_id or str(uuid.uuid4()),
        "Details": {
            "Availability Zone": instance.placement.zone if instance.placement else "",
            "Subnet ID": getattr(instance, "subnet_id", None) or "",
        },
        "RequestId": str(uuid.uuid4()),
        "StatusMessage": message,
        "EndTime": iso(utcnow()),
        "EC2InstanceId": instance.id,
        "StartTime": iso(start or utcnow()),
        "Cause": cause,
    }
    _route(detail, origin, destination)
    outcome = "Successful" if successful else "Unsuccessful"
    _put(group, f"EC2 Instance {kind} {outcome}", detail, instance.id)
