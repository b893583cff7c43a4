"""Caches for what moto 5.2.5 recomputes on every request although it never changes.

Each AWS request, moto lists its own package directory (``backends.list_of_moto_modules``:
one ``listdir`` and ~150 ``stat`` calls) to route the request, and introspects the
response class's methods (``method_names_from_class``) to find the action. Together that
is about a fifth of what an emulated DescribeInstances costs, and the emulator's lock is
held meanwhile. The results depend only on the installed moto, so they are computed once.
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
