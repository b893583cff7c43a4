"""Delayed actions (spot interruption follow-ups and the like), run under the one LOCK.

Callbacks are kept in a heap and run by the lifecycle timer thread (every 50 ms, see
:func:`lifecycle._timer_loop`), so they die with it on stop, and :func:`reset` drops every
pending one (``POST /moto-ext/reset``, ``/moto-api/reset``).
"""

from __future__ import annotations

import heapq
import itertools
import sys
import time
from typing import Any, Callable

from . import LOCK

_heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
_seq = itertools.count()


def schedule(delay_s: float, fn: Callable[..., Any], *args: Any) -> None:
    with LOCK:
        heapq.heappush(_heap, (time.monotonic() + max(0.0, delay_s), next(_seq), fn, args))


def pending() -> list[dict[str, Any]]:
    """What is scheduled, soonest first (``GET /moto-ext/timers``)."""
    now = time.monotonic()
    with LOCK:
        return [
            {
                "in_ms": max(0, round((due - now) * 1000)),
                "action": getattr(fn, "__name__", str(fn)),
                "args": [str(a) for a in args],
            }
            for due, _, fn, args in sorted(_heap)
        ]


def reset() -> None:
    with LOCK:
        _heap.clear()


def run_due() -> None:
    """Run every callback whose time has come, in time order, holding LOCK."""
    now = time.monotonic()
    with LOCK:
        while _heap and _heap[0][0] <= now:
            _, _, fn, args = heapq.heappop(_heap)
            try:
                fn(*args)
            except Exception as exc:  # a broken callback must not stop the others
                print(f"emulator: timer {getattr(fn, '__name__', fn)}: {exc!r}", file=sys.stderr, flush=True)
