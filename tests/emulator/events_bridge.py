"""Auto Scaling -> EventBridge: the events moto's Auto Scaling never emits.

The reactor is driven by EventBridge events with ``source: aws.autoscaling``. This module
builds them in AWS's shapes (see shared/AWS.md) and hands them to moto's own EventBridge
backend (default bus of the group's account and region), so rules with SQS targets and
event patterns deliver them exactly as they would deliver a PutEvents entry.
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


def _put(group: Any, detail_type: str, detail: dict[str, Any]) -> None:
    from moto.core.utils import unix_time
    from moto.events.models import events_backends

    account, region = group.account_id, group.region
    now = utcnow()
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.autoscaling",
        "account": account,
        # moto's SQS target turns a unix time into "2026-11-20T10:00:00Z".
        "time": unix_time(now.replace(tzinfo=None)),
        "region": region,
        "resources": [group.arn],
        "detail": detail,
    }
    record = copy.deepcopy(event)
    record["time"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    record["emitted"] = now.timestamp()  # the extension's own field: emission, epoch seconds
    _emitted.append(record)
    try:
        bus = events_backends[account][region].event_buses.get("default")
        for rule in list(bus.rules.values()) if bus else []:
            if getattr(rule, "state", "ENABLED") != "ENABLED":
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


def lifecycle_action(group: Any, hook: Any, instance_id: str, token: str) -> None:
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
    _put(group, f"EC2 Instance-{kind} Lifecycle Action", detail)


def activity_result(
    group: Any,
    state: Any,
    kind: str,
    successful: bool,
    cause: str,
    start: Any,
    message: str = "",
) -> None:
    """``EC2 Instance Launch|Terminate Successful|Unsuccessful``."""
    instance = state.instance
    verb = "Launching a new" if kind == "Launch" else "Terminating"
    detail = {
        "StatusCode": "InProgress" if successful else "Failed",
        "Description": f"{verb} EC2 instance: {instance.id}",
        "AutoScalingGroupName": group.name,
        "ActivityId": str(uuid.uuid4()),
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
    outcome = "Successful" if successful else "Unsuccessful"
    _put(group, f"EC2 Instance {kind} {outcome}", detail)
