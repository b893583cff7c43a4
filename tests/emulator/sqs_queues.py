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

``SenderId``: moto gives every message the same made-up sender. AWS gives the sender's
identity: for credentials from STS AssumeRole ``<role unique id>:<role session name>``, for
an IAM user's access key the user's unique id. SendMessage and SendMessageBatch (query and
JSON protocols) set it from the request's access key, looked up in moto's STS and IAM
models; messages that EventBridge delivers keep moto's sender.
"""

from __future__ import annotations

import threading
from typing import Any

# Held by every SQS request and every change to a queue's messages.
LOCK = threading.RLock()

_sending = threading.local()  # the SenderId of the SendMessage(Batch) this thread serves
_sender_ids: dict[str, str | None] = {}  # access key -> SenderId (None: moto's default)


def reset() -> None:
    with LOCK:
        _sender_ids.clear()


def set_sender(sender: str | None) -> None:
    """The SenderId the messages this thread sends next get (None: moto's own), for a
    SendMessage served without moto's request layer (:mod:`sqs_fast`)."""
    _sending.sender = sender


def sender_id(access_key: str) -> str | None:
    """The SenderId AWS gives a message sent with this access key, or None if the key is
    not one moto issued (an assumed role's or an IAM user's)."""
    if access_key in _sender_ids:
        return _sender_ids[access_key]
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    found: str | None = None
    for account in list(sts_backends.values()):
        for backend in list(account.values()):
            role = backend.get_assumed_role_from_access_key(access_key)
            if role is not None:
                found = role.user_id
                break
        if found:
            break
    if found is None:
        for account in list(iam_backends.values()):
            for backend in list(account.values()):
                user = backend.get_user_from_access_key_id(access_key)
                if user is not None:
                    found = user.id
                    break
            if found:
                break
    _sender_ids[access_key] = found
    return found


def install() -> None:
    from moto.sqs import responses as sqs_responses
    from moto.sqs.models import Message, Queue

    original_init = Queue.__init__
    original_add = Queue.add_message
    original_message_init = Message.__init__

    def message_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_message_init(self, *args, **kwargs)
        sender = getattr(_sending, "sender", None)
        if sender:
            self.sender_id = sender

    def sending(original: Any) -> Any:
        def send(self: Any) -> Any:
            with LOCK:
                _sending.sender = sender_id(self.get_access_key())
            try:
                return original(self)
            finally:
                _sending.sender = None

        send.__name__ = original.__name__
        return send

    Message.__init__ = message_init  # type: ignore[method-assign]
    for name in ("send_message", "send_message_batch"):
        setattr(sqs_responses.SQSResponse, name, sending(getattr(sqs_responses.SQSResponse, name)))

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._messages_lock = threading.Condition(LOCK)

    def add_message(self: Any, message: Any) -> None:
        with LOCK:
            original_add(self, message)

    Queue.__init__ = __init__  # type: ignore[method-assign]
    Queue.add_message = add_message  # type: ignore[method-assign]
