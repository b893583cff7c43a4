"""Self-test of Availability Zones (zones.py).

Run: ~/.cache/haproxy-asg/venv/bin/python -m pytest tests/emulator/test_zones_health.py -q
Every wait is bounded by a deadline.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .conftest import LAUNCHING, TERMINATING

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
