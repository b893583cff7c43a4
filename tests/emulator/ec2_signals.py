"""EC2's warnings about Spot capacity, and what follows them (``source: aws.ec2``).

moto has no Spot interruptions, and launches On-Demand instances only. Tests ask for a
warning over the control API, and its instance becomes a Spot instance first (EC2 warns
Spot instances only; ``DescribeInstances`` then answers ``InstanceLifecycle: spot``, which
the reactor and the agents require before they believe an ``haproxy:interrupted`` tag):

* ``POST /moto-ext/ec2/spot-interruption`` puts ``EC2 Spot Instance Interruption Warning``
  (detail ``instance-id``, ``instance-action``) at once;
* ``POST /moto-ext/ec2/rebalance-recommendation`` puts ``EC2 Instance Rebalance
  Recommendation`` (detail ``instance-id``) at once;

then, optionally, after ``hook_after_ms`` Auto Scaling starts replacing the instance (its
terminate lifecycle hooks run, a replacement launches as for a termination without
decrement), and after ``terminate_after_ms`` EC2 reclaims it whatever Auto Scaling is doing
(:func:`lifecycle.reclaim`). The delays are :mod:`timers` entries: reset and stop drop them.
"""

from __future__ import annotations

from typing import Any

from . import LOCK, events_bridge, lifecycle, timers, utcnow

ACTIONS = ("terminate", "stop", "hibernate")
MAX_DELAY_MS = 86_400_000


def _find(instance_id: str) -> tuple[str, str, Any] | None:
    from moto.ec2.models import ec2_backends

    for account, regions in list(ec2_backends.items()):
        for region, backend in list(regions.items()):
            for reservation in list(backend.reservations.values()):
                for instance in reservation.instances:
                    if instance.id == instance_id:
                        return account, region, instance
    return None


def _delay(body: dict[str, Any], key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DELAY_MS:
        raise ValueError(f"{key} must be null or an integer from 0 to {MAX_DELAY_MS}")
    return value


def _target(body: Any) -> tuple[str, str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("instance"), str) or not body["instance"]:
        raise ValueError('give {"instance": "i-..."}')
    found = _find(body["instance"])
    if found is None:
        raise ValueError(f"unknown instance {body['instance']}: no EC2 instance has this id")
    if found[2].state == "terminated":
        raise ValueError(f"instance {body['instance']} is already terminated")
    return found


def _follow_ups(account: str, region: str, instance_id: str, hook_ms: int | None, reclaim_ms: int | None,
                cause: str, ec2_action: str) -> None:
    if hook_ms is not None:
        timers.schedule(hook_ms / 1000, lifecycle.replace_interrupted, account, region, instance_id, cause)
    if reclaim_ms is not None:
        timers.schedule(reclaim_ms / 1000, lifecycle.reclaim, account, region, instance_id, ec2_action)


def _as_spot(instance: Any) -> None:
    """EC2 warns Spot instances only: the warned instance is one from now on."""
    instance.lifecycle = "spot"


def spot_interruption(body: Any) -> dict[str, Any]:
    action = (body or {}).get("action", "terminate") if isinstance(body, dict) else "terminate"
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    hook_ms = _delay(body, "hook_after_ms", None)
    reclaim_ms = _delay(body, "terminate_after_ms", 120_000)
    with LOCK:
        account, region, instance = _target(body)
        _as_spot(instance)
        events_bridge.put(
            account,
            region,
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            [events_bridge.instance_arn(account, region, instance.id)],
            {"instance-id": instance.id, "instance-action": action},
        )
        cause = (
            f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of service in response to "
            "an EC2 Spot Instance interruption notice."
        )
        _follow_ups(account, region, instance.id, hook_ms, reclaim_ms, cause, action)
    return {"instance": instance.id, "action": action, "hook_after_ms": hook_ms, "terminate_after_ms": reclaim_ms}


def rebalance_recommendation(body: Any) -> dict[str, Any]:
    hook_ms = _delay(body if isinstance(body, dict) else {}, "hook_after_ms", None)
    reclaim_ms = _delay(body if isinstance(body, dict) else {}, "terminate_after_ms", None)
    with LOCK:
        account, region, instance = _target(body)
        _as_spot(instance)
        events_bridge.put(
            account,
            region,
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            [events_bridge.instance_arn(account, region, instance.id)],
            {"instance-id": instance.id},
        )
        cause = (
            f"At {utcnow():%Y-%m-%dT%H:%M:%SZ} an instance was taken out of service in response to "
            "an EC2 instance rebalance recommendation."
        )
        _follow_ups(account, region, instance.id, hook_ms, reclaim_ms, cause, "terminate")
    return {"instance": instance.id, "hook_after_ms": hook_ms, "terminate_after_ms": reclaim_ms}
