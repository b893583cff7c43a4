"""Shortcuts for what moto 5.2.5 recomputes on every request, with the same answers.

Each AWS request, moto lists its own package directory (``backends.list_of_moto_modules``:
one ``listdir`` and ~150 ``stat`` calls) to route the request, and introspects the
response class's methods (``method_names_from_class``) to find the action. Together that
is about a fifth of what an emulated DescribeInstances costs, and the emulator's lock is
held meanwhile. The results depend only on the installed moto, so they are computed once.

An EC2 resource's tags (``TaggedEC2Resource.get_tags``) are read by moto through
``describe_tags`` with a ``resource-id`` filter, which matches a regular expression
against every tag of every resource: DescribeInstances with a tag filter, or rendering
the instances it returns, then costs time in the square of the instances the emulator
ever ran (terminated ones stay listed). A benchmark of a few hundred scaling cycles saw
one such call hold the lock 40-60 ms. The tags are read straight from the backend's
table instead, in the same form and order (an id with a wildcard character still goes
through ``describe_tags``, whose filter would treat it as a pattern).
"""

from __future__ import annotations

from typing import Any, Callable


def install() -> None:
    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    original: Callable[[Any], list[str]] = responses.method_names_from_class
    names: dict[type, list[str]] = {}

    def method_names_from_class(clazz: Any) -> list[str]:
        found = names.get(clazz)
        if found is None:
            found = names[clazz] = original(clazz)
        return found

    responses.method_names_from_class = method_names_from_class  # type: ignore[assignment]

    from moto.ec2.models import core as ec2_core
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    slow_get_tags = ec2_core.TaggedEC2Resource.get_tags

    def get_tags(self: Any) -> list[dict[str, str]]:
        rid = getattr(self, "id", None)
        if not rid or any(c in rid for c in "*?[]"):
            return slow_get_tags(self)
        tags = self.ec2_backend.tags.get(rid)
        if not tags:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")
        return [
            {"resource_id": rid, "key": k, "value": v, "resource_type": kind}
            for k, v in list(tags.items())
        ]

    ec2_core.TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]
