"""Self-test of Availability Zones (zones.py) and SetInstanceHealth replacement (health.py).

Run: ~/.cache/haproxy-asg/venv/bin/python -m pytest tests/emulator/test_zones_health.py -q
Every wait is bounded by a deadline.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import LAUNCHING, TERMINATING, wait_until

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


# --------------------------------------------------------------------------- helpers


def _subnets(world, zones=ZONES) -> list[str]:
    """One subnet per zone, in that order: 127.0.2.0/24, 127.0.3.0/24, ... (the world's own
    subnet is in a zone moto picks at random, as AWS does without AvailabilityZone)."""
    vpc = world.ec2.describe_subnets(SubnetIds=[world.subnet])["Subnets"][0]["VpcId"]
    return [
        world.ec2.create_subnet(VpcId=vpc, CidrBlock=f"127.0.{n}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for n, zone in enumerate(zones, start=2)
    ]


def _group(world, name: str, subnets: list[str], desired: int = 0, hooks: list[dict] | None = None, **extra: Any) -> str:
    world.asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=20,
        DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateName": "backend-lt"},
        VPCZoneIdentifier=",".join(subnets),
        LifecycleHookSpecificationList=hooks or [],
        **extra,
    )
    return name


def _hooks(launch: bool = True, terminate: bool = True) -> list[dict]:
    out = []
    if launch:
        out.append({"LifecycleHookName": "launch", "LifecycleTransition": LAUNCHING, "HeartbeatTimeout": 300})
    if terminate:
        out.append({"LifecycleHookName": "terminate", "LifecycleTransition": TERMINATING, "HeartbeatTimeout": 300})
    return out


def _asg_instances(world, group: str) -> dict[str, dict]:
    g = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    return {i["InstanceId"]: i for i in g["Instances"]}


def _ec2_instances(world, ids: list[str]) -> dict[str, dict]:
    out = {}
    for r in world.ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for i in r["Instances"]:
            out[i["InstanceId"]] = i
    return out


def _zones_agree(world, group: str, subnet_zone: dict[str, str]) -> Counter:
    """Asserts that Auto Scaling and EC2 give every member its subnet's zone; per zone counts."""
    asg = _asg_instances(world, group)
    ec2 = _ec2_instances(world, list(asg))
    for iid, member in asg.items():
        placed = ec2[iid]["Placement"]["AvailabilityZone"]
        assert member["AvailabilityZone"] == placed == subnet_zone[ec2[iid]["SubnetId"]], (iid, member, ec2[iid])
    return Counter(m["AvailabilityZone"] for m in asg.values())


def _events(world, detail_type: str, instance: str | None = None) -> list[dict]:
    return [
        e
        for e in world.emu.control("GET", "/moto-ext/events")
        if e["detail-type"] == detail_type and (instance is None or e["detail"]["EC2InstanceId"] == instance)
    ]


def _health_log(world, event: str | None = None) -> list[dict]:
    log = world.emu.control("GET", "/moto-ext/instance-health")["log"]
    return [r for r in log if event is None or r["event"] == event]


def _no_replacement_timer(world) -> bool:
    return not any(t["action"] == "_replace" for t in world.emu.control("GET", "/moto-ext/timers"))


def _in_service(world, group: str, n: int, hook: str = "launch") -> list[str]:
    """Completes every pending launch action of the group until n members are InService."""
    for r in world.pending():
        if r["group"] == group and r["transition"] == LAUNCHING:
            world.complete(group, hook, "CONTINUE", token=r["token"])
    states = world.states(group)
    assert list(states.values()) == ["InService"] * n, states
    return list(states)


def _unhealthy(world, instance: str, respect: bool | None = False, status: str = "Unhealthy") -> None:
    kwargs: dict[str, Any] = {"InstanceId": instance, "HealthStatus": status}
    if respect is not None:
        kwargs["ShouldRespectGracePeriod"] = respect
    world.asg.set_instance_health(**kwargs)


# --------------------------------------------------------------------------- zones


def test_instances_take_their_subnets_zone_and_the_group_balances_its_zones(world):
    subnets = _subnets(world)
    subnet_zone = dict(zip(subnets, ZONES))
    g = _group(world, "web", subnets, desired=6)
    described = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]
    assert sorted(described["AvailabilityZones"]) == list(ZONES)
    assert _zones_agree(world, g, subnet_zone) == {z: 2 for z in ZONES}
    # Each subnet's own addresses, in launch order (127.0.N.4, .5).
    ec2 = _ec2_instances(world, list(_asg_instances(world, g)))
    assert sorted(i["PrivateIpAddress"] for i in ec2.values()) == sorted(
        f"127.0.{n}.{h}" for n in (2, 3, 4) for h in (4, 5)
    )
    # The activity events carry the same zone and subnet.
    for e in _events(world, "EC2 Instance Launch Successful"):
        i = ec2[e["detail"]["EC2InstanceId"]]
        assert e["detail"]["Details"] == {"Availability Zone": i["Placement"]["AvailabilityZone"], "Subnet ID": i["SubnetId"]}

    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=7)
    assert _zones_agree(world, g, subnet_zone) == {"us-east-1a": 3, "us-east-1b": 2, "us-east-1c": 2}, "a tie: first listed"
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=4)
    counts = _zones_agree(world, g, subnet_zone)
    # From a (3), then ties: the oldest candidate each time (a's second, then b's first).
    assert counts == {"us-east-1a": 1, "us-east-1b": 1, "us-east-1c": 2}, counts

    # Lose zone c's two (EC2 terminates them): the first replacement goes to c (the zone
    # with the fewest, none), the second to a (a tie of three: the first listed).
    in_c = [i for i, m in _asg_instances(world, g).items() if m["AvailabilityZone"] == "us-east-1c"]
    world.ec2.terminate_instances(InstanceIds=in_c)
    assert _zones_agree(world, g, subnet_zone) == {"us-east-1a": 2, "us-east-1b": 1, "us-east-1c": 1}


def test_scale_in_takes_from_the_fullest_zone_oldest_first(world):
    subnets = _subnets(world, ZONES[:2])
    subnet_zone = dict(zip(subnets, ZONES))
    g = _group(world, "web", subnets, desired=4)
    a1, a2, b1, b2 = order = list(_asg_instances(world, g))  # launch order: one launch per subnet
    assert [_asg_instances(world, g)[i]["AvailabilityZone"] for i in order] == ["us-east-1a"] * 2 + ["us-east-1b"] * 2
    # Unbalance it (detaching with decrement launches nothing): a 2, b 1.
    world.asg.detach_instances(AutoScalingGroupName=g, InstanceIds=[b1], ShouldDecrementDesiredCapacity=True)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    assert sorted(_asg_instances(world, g)) == sorted([a2, b2]), "from the fuller zone a, its oldest (not b2)"
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=4)
    assert _zones_agree(world, g, subnet_zone) == {"us-east-1a": 2, "us-east-1b": 2}
    (a3,) = [i for i, m in _asg_instances(world, g).items() if m["AvailabilityZone"] == "us-east-1a" and i != a2]
    (b3,) = [i for i, m in _asg_instances(world, g).items() if m["AvailabilityZone"] == "us-east-1b" and i != b2]
    # A zone whose instances are all protected from scale-in is passed over.
    world.asg.set_instance_protection(AutoScalingGroupName=g, InstanceIds=[a2, a3], ProtectedFromScaleIn=True)
    world.asg.detach_instances(AutoScalingGroupName=g, InstanceIds=[b2], ShouldDecrementDesiredCapacity=True)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    assert sorted(_asg_instances(world, g)) == sorted([a2, a3]), "b3 went, though a had more"


def test_a_group_of_zones_without_subnets_and_a_warm_pool_are_balanced_too(world):
    world.asg.create_auto_scaling_group(
        AutoScalingGroupName="classic",
        MinSize=0,
        MaxSize=10,
        DesiredCapacity=4,
        LaunchTemplate={"LaunchTemplateName": "backend-lt"},
        AvailabilityZones=["us-east-1b", "us-east-1c"],
    )
    asg = _asg_instances(world, "classic")
    ec2 = _ec2_instances(world, list(asg))
    assert all(m["AvailabilityZone"] == ec2[i]["Placement"]["AvailabilityZone"] for i, m in asg.items())
    assert Counter(m["AvailabilityZone"] for m in asg.values()) == {"us-east-1b": 2, "us-east-1c": 2}

    subnets = _subnets(world, ZONES[:2])
    g = _group(world, "warm", subnets, desired=0)
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=4, MaxGroupPreparedCapacity=4, PoolState="Running")
    pool = world.asg.describe_warm_pool(AutoScalingGroupName=g)["Instances"]
    assert Counter(i["AvailabilityZone"] for i in pool) == {"us-east-1a": 2, "us-east-1b": 2}


# --------------------------------------------------------------------------- SetInstanceHealth


def test_unhealthy_is_replaced_through_the_terminate_hook_and_a_launch_hook(world):
    subnets = _subnets(world, ZONES[:2])
    g = _group(world, "web", subnets, desired=2, hooks=_hooks())
    first, second = _in_service(world, g, 2)
    world.emu.control("POST", "/moto-ext/calls/reset")
    assert world.emu.control("GET", "/moto-ext/instance-health")["replace_after_ms"] == 2000, "the default"

    _unhealthy(world, second)
    member = _asg_instances(world, g)[second]
    assert (member["HealthStatus"], member["LifecycleState"]) == ("Unhealthy", "InService"), "marked now, replaced later"
    (described,) = world.asg.describe_auto_scaling_instances(InstanceIds=[second])["AutoScalingInstances"]
    assert described["HealthStatus"] == "Unhealthy"
    (scheduled,) = _health_log(world)
    assert (scheduled["outcome"], scheduled["replace_in_ms"], scheduled["respect_grace_period"]) == ("scheduled", 2000, False)

    wait_until(lambda: world.states(g).get(second) == "Terminating:Wait", timeout=8, what="Terminating:Wait")
    states = world.states(g)
    (new,) = [i for i in states if i not in (first, second)]
    assert states == {first: "InService", second: "Terminating:Wait", new: "Pending:Wait"}, "launched while it terminates"
    assert world.ec2_state(second) == "running"
    (action,) = world.pending(second)
    assert (action["hook"], action["transition"], action["origin"], action["destination"]) == (
        "terminate", TERMINATING, "AutoScalingGroup", "EC2")
    (event,) = _events(world, "EC2 Instance-terminate Lifecycle Action", second)
    assert event["detail"]["LifecycleActionToken"] == action["token"]
    assert (event["detail"]["Origin"], event["detail"]["Destination"]) == ("AutoScalingGroup", "EC2")
    (launch_event,) = _events(world, "EC2 Instance-launch Lifecycle Action", new)
    zones = {i: m["AvailabilityZone"] for i, m in _asg_instances(world, g).items()}
    assert zones[new] == zones[second] != zones[first], "the replacement goes where the group is short"
    (replace,) = _health_log(world, "replace")
    assert replace["instance"] == second and replace["cause"].endswith(
        "an instance was taken out of service in response to a user health-check.")

    # The event is the one a scale-in emits: same keys, same resources.
    other = _group(world, "other", [world.subnet], desired=1, hooks=_hooks(launch=False))
    world.asg.set_desired_capacity(AutoScalingGroupName=other, DesiredCapacity=0)
    (scale_event,) = [e for e in _events(world, "EC2 Instance-terminate Lifecycle Action") if e["detail"]["AutoScalingGroupName"] == other]
    assert set(scale_event["detail"]) == set(event["detail"])
    arns = {
        x["AutoScalingGroupName"]: x["AutoScalingGroupARN"]
        for x in world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g, other])["AutoScalingGroups"]
    }
    assert (scale_event["resources"], event["resources"]) == ([arns[other]], [arns[g]])

    world.complete(g, "terminate", "CONTINUE", token=action["token"])
    assert second not in world.states(g) and world.ec2_state(second) == "terminated"
    (done,) = _events(world, "EC2 Instance Terminate Successful", second)
    assert done["detail"]["Cause"] == replace["cause"]
    world.complete(g, "launch", "CONTINUE", token=launch_event["detail"]["LifecycleActionToken"])
    assert world.states(g)[new] == "InService"
    calls = [c for c in world.emu.control("GET", "/moto-ext/calls") if c["action"] == "SetInstanceHealth"]
    assert [(c["service"], c["status"]) for c in calls] == [("autoscaling", 200)]


def test_healthy_before_the_replacement_cancels_it(world):
    g = _group(world, "web", [world.subnet], desired=2, hooks=_hooks())
    first, second = _in_service(world, g, 2)
    world.emu.control("POST", "/moto-ext/instance-health", {"replace_after_ms": 1500})
    _unhealthy(world, first)
    _unhealthy(world, first, status="Healthy")
    assert _asg_instances(world, g)[first]["HealthStatus"] == "Healthy"
    wait_until(lambda: _no_replacement_timer(world), timeout=8, what="the replacement timer ran")
    assert world.states(g) == {first: "InService", second: "InService"}
    assert _asg_instances(world, g)[first]["HealthStatus"] == "Healthy"
    assert [r for r in world.emu.control("GET", "/moto-ext/lifecycle") if r["transition"] == TERMINATING] == []
    assert [r["outcome"] for r in _health_log(world)] == ["scheduled", "cancelled"]

    # Marked again later: replaced after all (the cancelled timer does not count).
    world.emu.control("POST", "/moto-ext/instance-health", {"replace_after_ms": 0})
    _unhealthy(world, first)
    wait_until(lambda: world.states(g).get(first) == "Terminating:Wait", timeout=8, what="replaced")


def test_a_second_unhealthy_replaces_once(world):
    g = _group(world, "web", [world.subnet], desired=2, hooks=_hooks())
    first, second = _in_service(world, g, 2)
    world.emu.control("POST", "/moto-ext/instance-health", {"replace_after_ms": 300})
    _unhealthy(world, first)
    _unhealthy(world, first)
    wait_until(lambda: world.states(g).get(first) == "Terminating:Wait", timeout=8, what="Terminating:Wait")
    wait_until(lambda: _no_replacement_timer(world), timeout=8, what="every timer ran")
    _unhealthy(world, first)  # already leaving: nothing
    _unhealthy(world, first, status="Healthy")  # too late to cancel
    states = world.states(g)
    assert Counter(states.values()) == {"InService": 1, "Terminating:Wait": 1, "Pending:Wait": 1}, states
    assert len([r for r in world.emu.control("GET", "/moto-ext/lifecycle") if r["transition"] == TERMINATING]) == 1
    assert len(_events(world, "EC2 Instance-terminate Lifecycle Action")) == 1
    assert len([r for r in world.emu.control("GET", "/moto-ext/lifecycle") if r["transition"] == LAUNCHING]) == 3
    assert [r["outcome"] for r in _health_log(world, "SetInstanceHealth")] == [
        "scheduled", "already-unhealthy", "leaving", "leaving"]
    assert len(_health_log(world, "replace")) == 1
    assert _asg_instances(world, g)[first]["HealthStatus"] == "Unhealthy"
    group = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 2


def test_the_grace_period_is_respected_unless_told_otherwise(world):
    plain = _group(world, "plain", [world.subnet], desired=1)
    zero = _group(world, "zero", [world.subnet], desired=1, HealthCheckGracePeriod=0)
    graced = _group(world, "graced", [world.subnet], desired=1, HealthCheckGracePeriod=600)
    periods = {
        g["AutoScalingGroupName"]: g["HealthCheckGracePeriod"]
        for g in world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[plain, zero, graced])["AutoScalingGroups"]
    }
    assert periods == {"plain": 0, "zero": 0, "graced": 600}, "AWS's API default is 0; 0 stays 0"
    world.emu.control("POST", "/moto-ext/instance-health", {"replace_after_ms": 0})

    (young,) = world.states(graced)
    _unhealthy(world, young, respect=None)  # the default: respect it
    _unhealthy(world, young, respect=True)
    assert _asg_instances(world, graced)[young]["HealthStatus"] == "Healthy"
    assert _no_replacement_timer(world)
    _unhealthy(world, young, respect=False)
    wait_until(lambda: world.states(graced).get(young) is None, timeout=8, what="replaced (no terminate hook)")
    assert world.ec2_state(young) == "terminated" and len(world.states(graced)) == 1

    (member,) = world.states(zero)
    _unhealthy(world, member, respect=True)  # no grace period to respect
    wait_until(lambda: member not in world.states(zero), timeout=8, what="replaced")
    assert [r["outcome"] for r in _health_log(world, "SetInstanceHealth")] == [
        "grace-period", "grace-period", "scheduled", "scheduled"]


def test_an_attached_instance_has_the_grace_period_too(world):
    g = _group(world, "graced", [world.subnet], desired=0, HealthCheckGracePeriod=600)
    (attached,) = [i["InstanceId"] for i in world.ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=world.subnet)["Instances"]]
    world.asg.attach_instances(AutoScalingGroupName=g, InstanceIds=[attached])
    assert world.states(g) == {attached: "InService"}
    _unhealthy(world, attached, respect=True)
    assert _asg_instances(world, g)[attached]["HealthStatus"] == "Healthy"
    _unhealthy(world, attached, respect=False)
    assert _asg_instances(world, g)[attached]["HealthStatus"] == "Unhealthy"
    assert [r["outcome"] for r in _health_log(world)] == ["grace-period", "scheduled"]


def test_an_instance_still_launching_is_replaced_once_in_service(world):
    g = _group(world, "web", [world.subnet], desired=1, hooks=_hooks(terminate=False))
    (member,) = world.states(g)
    world.emu.control("POST", "/moto-ext/instance-health", {"replace_after_ms": 200})
    _unhealthy(world, member)
    time.sleep(1.0)  # five rounds of the timer
    assert not _no_replacement_timer(world) and _health_log(world, "replace") == [], "still waiting for InService"
    assert world.states(g) == {member: "Pending:Wait"}
    world.complete(g, "launch", "CONTINUE", instance=member)
    wait_until(lambda: member not in world.states(g), timeout=8, what="replaced once InService")
    (new,) = world.states(g)
    assert world.states(g) == {new: "Pending:Wait"} and world.ec2_state(member) == "terminated"


def test_a_warm_pool_instance_marked_unhealthy_is_replaced_in_the_pool(world):
    g = _group(world, "web", [world.subnet], desired=0, hooks=_hooks(launch=False))
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=1, MaxGroupPreparedCapacity=1, PoolState="Stopped")
    (warm,) = [i["InstanceId"] for i in world.asg.describe_warm_pool(AutoScalingGroupName=g)["Instances"]]
    world.emu.control("POST", "/moto-ext/instance-health", {"replace_after_ms": 0})
    _unhealthy(world, warm, respect=True)  # no grace period in a warm pool
    wait_until(lambda: world.pending(warm), timeout=8, what="the terminate hook")
    pool = {i["InstanceId"]: i["LifecycleState"] for i in world.asg.describe_warm_pool(AutoScalingGroupName=g)["Instances"]}
    (refill,) = [i for i in pool if i != warm]
    assert pool == {warm: "Warmed:Terminating:Wait", refill: "Warmed:Stopped"}
    world.complete(g, "terminate", "CONTINUE", instance=warm)
    assert world.ec2_state(warm) == "terminated"


def test_set_instance_health_refuses_what_aws_refuses(world):
    g = _group(world, "web", [world.subnet], desired=1)
    (member,) = world.states(g)
    loose = world.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=world.subnet)
    for instance, status, message in [
        (loose["Instances"][0]["InstanceId"], "Unhealthy", "No managed instance found for instance ID"),
        ("i-0123456789abcdef0", "Unhealthy", "No managed instance found for instance ID"),
        (member, "Sick", "Valid instance health states are: [Healthy, Unhealthy]"),
    ]:
        with pytest.raises(ClientError) as err:
            world.asg.set_instance_health(InstanceId=instance, HealthStatus=status)
        assert err.value.response["Error"]["Code"] == "ValidationError" and message in err.value.response["Error"]["Message"]
    assert _health_log(world) == [] and world.states(g) == {member: "InService"}
    with pytest.raises(Exception):
        world.emu.control("POST", "/moto-ext/instance-health", {"replace_after_ms": -1})
