"""Threads reused instead of started one per job: Run Command invocations and requests.

Each invocation of a document, exec, forward or delayed fixed program runs on a thread of
its own (a forward's HTTP exchange, a process's wait), all at once; so does each HTTP
connection the server accepts. Starting a thread (``Thread.start``) waits until the new
thread has run, and the new thread takes the interpreter for up to a switch interval
(server.py sets 0.5 ms) before it blocks: a SendCommand to 50 forwarded hosts spent most
of its ~45 ms (median, bench_calls.py on this 2-core machine) starting 50 threads while
holding the emulator's lock, and starting a thread per accepted connection was a tenth of
the emulator's interpreter time in scale-bench (py-spy --gil: 100 stand-in proxies each
open a connection per report message, as clients without keep-alive do). ``Pool.submit``
hands the job to an idle thread through a queue (no wait), or starts one only when none is
idle, so every job still starts at once; a thread idle for ``idle_s`` ends.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

IDLE_S = 60.0


class Pool:
    """Threads named ``name`` running submitted jobs at once, reused while idle."""

    def __init__(self, name: str, idle_s: float = IDLE_S) -> None:
        self.name = name
        self.idle_s = idle_s
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Threads waiting for a job that no submitted job has claimed yet. Invariant: the
        # threads waiting in _jobs.get() = _idle + the jobs queued, so each queued job has
        # a thread for it.
        self._idle = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Runs fn(*args) at once on a thread of the pool."""
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put((fn, args))
        if spawn:
            threading.Thread(target=self._serve, name=self.name, daemon=True).start()

    def idle(self) -> int:
        with self._lock:
            return self._idle

    def _serve(self) -> None:
        while True:
            try:
                fn, args = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # more idle threads than queued jobs: this one may go
                        self._idle -= 1
                        return
                continue
            try:
                fn(*args)
            except Exception:  # as a thread of its own would: logged, and the thread goes on
                logging.getLogger(__name__).exception("job %r of pool %s failed", fn, self.name)
            with self._lock:
                self._idle += 1


# Run Command invocations (ssm_exec.py).
RUN_COMMAND = Pool("moto-ext-ssm")
submit = RUN_COMMAND.submit
idle = RUN_COMMAND.idle

# The server's accepted connections (server.py).
REQUESTS = Pool("moto-ext-http")
