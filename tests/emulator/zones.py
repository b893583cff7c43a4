"""Availability Zones: where a group launches its instances and which ones scale-in takes.

moto 5.2.5 launches every instance of a group in the first subnet of its
``VPCZoneIdentifier`` (so EC2's ``Placement.AvailabilityZone`` is that subnet's zone and a
group over subnets in three zones fills one), and scale-in ignores zones. Auto Scaling
(user guide, "Use multiple Availability Zones" / "Instance distribution"): "Amazon EC2
Auto Scaling attempts to distribute instances evenly between the Availability Zones that
are enabled for your Auto Scaling group ... by attempting to launch new instances in the
Availability Zone with the fewest instances", and its default termination policy first
"determines which Availability Zones have the most instances, and at least one instance
that is not protected from scale in", then picks in that zone. Here:

* :func:`launch` gives each new instance the zone with the fewest instances among the
  group's zones (ties: the zone listed first, in ``VPCZoneIdentifier`` order), and in that
  zone the subnet with the fewest of them (ties: listed first); moto then launches it in
  that subnet, so EC2's placement, the subnet and ``Instances[].AvailabilityZone`` agree.
  Instances that count are the ones the caller passes (the group's members that count
  toward the desired capacity, or the warm pool's live instances for the pool). A group
  without subnets (``AvailabilityZones`` only) is balanced over those zones the same way.
* :func:`scale_in_victims` takes, one at a time, from the zone with the most counted
  instances that has an unprotected one (ties: the zone holding the oldest candidate),
  the oldest unprotected instance of that zone (the emulator's order within a zone, as
  before: launch order). In a group with one zone this is oldest first, as it always was.

Not modelled: zone rebalancing after the group's zones change (``AZRebalance``), a zone
failing to launch (the next zone is tried by AWS), capacity-weighted balancing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import lifecycle


def zone_of(state: Any) -> str:
    placement = getattr(state.instance, "placement", None)
    return getattr(placement, "zone", None) or getattr(state, "availability_zone", "") or ""


def _subnets_by_zone(group: Any) -> dict[str, list[str]]:
    """The group's subnets per zone, both in ``VPCZoneIdentifier`` order."""
    ids = [s.strip() for s in (group.vpc_zone_identifier or "").split(",") if s.strip()]
    if not ids:
        return {}
    ec2 = group.autoscaling_backend.ec2_backend
    zones: dict[str, list[str]] = {}
    for subnet_id in ids:
        try:
            zone = ec2.get_subnet(subnet_id).availability_zone
        except Exception:  # a subnet deleted under the group: moto's launch will say so
            continue
        zones.setdefault(zone, []).append(subnet_id)
    return zones


def plan(group: Any, count: int, peers: list[Any]) -> list[tuple[str, str | None]]:
    """(zone, subnet or None) for each of ``count`` new instances, given the instances
    already counted (``peers``)."""
    by_zone = _subnets_by_zone(group)
    if not by_zone:
        by_zone = {z: [] for z in dict.fromkeys(group.availability_zones or [])}
    if not by_zone:
        return []
    in_zone = Counter(zone_of(s) for s in peers)
    in_subnet = Counter(getattr(s.instance, "subnet_id", None) for s in peers)
    order = list(by_zone)
    out: list[tuple[str, str | None]] = []
    for _ in range(count):
        zone = min(order, key=lambda z: (in_zone[z], order.index(z)))
        subnets = by_zone[zone]
        subnet = min(subnets, key=lambda s: (in_subnet[s], subnets.index(s))) if subnets else None
        in_zone[zone] += 1
        in_subnet[subnet] += 1
        out.append((zone, subnet))
    return out


def launch(group: Any, count: int, propagated_tags: dict[str, str], peers: list[Any]) -> None:
    """moto's launch of ``count`` instances into ``group.instance_states``, spread over the
    group's zones (one moto launch per subnet, in the order the plan first uses them)."""
    placements = plan(group, count, peers)
    if not placements:
        lifecycle._orig_replace(group, count, dict(propagated_tags))  # moto says what is wrong
        return
    for place, n in Counter(placements).items():  # insertion order: first use
        _launch_in(group, place, n, propagated_tags)


def _launch_in(group: Any, place: tuple[str, str | None], n: int, propagated_tags: dict[str, str]) -> None:
    zone, subnet = place
    saved = group.vpc_zone_identifier, group.availability_zones
    try:
        # moto launches in the first subnet listed (or a random zone of the list without
        # subnets): for the time of this launch, the list is the chosen one.
        if subnet is not None:
            group.vpc_zone_identifier = subnet
        else:
            group.availability_zones = [zone]
        lifecycle._orig_replace(group, n, dict(propagated_tags))
    finally:
        group.vpc_zone_identifier, group.availability_zones = saved


def scale_in_victims(counted: list[Any], n: int) -> list[Any]:
    """``n`` instances to take out (fewer if not enough are unprotected), by the default
    termination policy's zone step, oldest first within a zone."""
    victims: list[Any] = []
    chosen: set[int] = set()
    for _ in range(max(0, n)):
        left = [s for s in counted if id(s) not in chosen]
        candidates = [s for s in left if not s.protected_from_scale_in]
        if not candidates:
            break
        per_zone = Counter(zone_of(s) for s in left)
        most = max(per_zone[zone_of(s)] for s in candidates)
        victim = next(s for s in candidates if per_zone[zone_of(s)] == most)
        victims.append(victim)
        chosen.add(id(victim))
    return victims
