"""Threads that run Run Command invocations, reused instead of started one per invocation.

Each invocation of a document, exec, forward or delayed fixed program runs on a thread of
its own (a forward's HTTP exchange, a process's wait), all at once. Starting a thread
(``Thread.start``) waits until the new thread has run, and the new thread takes the
interpreter for up to a switch interval (server.py sets 0.5 ms) before it blocks: a
SendCommand to 50 forwarded hosts spent most of its ~45 ms (median, bench_calls.py on this
2-core machine) starting 50 threads while holding the emulator's lock. ``submit`` hands
the job to an idle thread through a queue (no wait), or starts one only when none is idle,
so every job still starts at once; a thread idle for ``IDLE_S`` ends.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

IDLE_S = 60.0

_jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
_lock = threading.Lock()
# Threads waiting for a job that no submitted job has claimed yet. Invariant: the threads
# waiting in _jobs.get() = _idle + the jobs queued, so each queued job has a thread for it.
_idle = 0


def submit(fn: Callable[..., Any], *args: Any) -> None:
    """Runs fn(*args) at once on a thread of the pool."""
    global _idle
    with _lock:
        spawn = _idle == 0
        if not spawn:
            _idle -= 1
    _jobs.put((fn, args))
    if spawn:
        threading.Thread(target=_serve, name="moto-ext-ssm", daemon=True).start()


def idle() -> int:
    with _lock:
        return _idle


def _serve() -> None:
    global _idle
    while True:
        try:
            fn, args = _jobs.get(timeout=IDLE_S)
        except queue.Empty:
            with _lock:
                if _idle > 0:  # more idle threads than queued jobs: this one may go
                    _idle -= 1
                    return
            continue
        try:
            fn(*args)
        except Exception:  # as a thread of its own would: logged, and the thread goes on
            logging.getLogger(__name__).exception("Run Command job %r failed", fn)
        with _lock:
            _idle += 1
