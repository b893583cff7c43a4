"""SQS requests one at a time, while long polls still wait without blocking anyone.

SQS requests are served outside the emulator's lock so that a consumer's long poll
(``ReceiveMessage`` with ``WaitTimeSeconds``) does not stop every other AWS call. moto's
queues are not safe to share between threads, though: two receivers at once crashed one
of them (``RuntimeError: Set changed size during iteration`` while reading the in-flight
message groups: an HTTP 500 the e2e benchmark's event pump saw), and a ``DeleteMessage``
rebuilding the message list while an event was delivered would drop that event.

Every SQS request therefore holds :data:`LOCK`, and every queue's message condition (what
``add_message`` notifies and a long poll waits on) is built on that same lock: waiting for
a message releases it, delivering one (an EventBridge target, under the emulator's lock)
takes it. Lock order is always the emulator's lock, then this one.
"""

from __future__ import annotations

import threading
from typing import Any

# Held by every SQS request and every change to a queue's messages.
LOCK = threading.RLock()


def install() -> None:
    from moto.sqs.models import Queue

    original_init = Queue.__init__
    original_add = Queue.add_message

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._messages_lock = threading.Condition(LOCK)

    def add_message(self: Any, message: Any) -> None:
        with LOCK:
            original_add(self, message)

    Queue.__init__ = __init__  # type: ignore[method-assign]
    Queue.add_message = add_message  # type: ignore[method-assign]
