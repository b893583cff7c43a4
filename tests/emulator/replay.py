"""Answers to SDK retries of calls already applied: the same answer again.

An AWS SDK retries a call whose answer it did not get, with the same
``amz-sdk-invocation-id`` and ``amz-sdk-request: attempt=N`` (N > 1). AWS loses an answer
rarely; the emulator's own HTTP server has been seen to (a ``RevokeSecurityGroupEgress``
answered 200 in 2 ms, then retried by the Terraform provider as attempt 2, which failed
``InvalidPermission.NotFound`` and with it a whole ``terraform destroy``). So a retry of
a mutating call the emulator already answered with success gets that answer again
instead of being applied twice; the call log marks it ``"replayed": true``.

Only successful answers of mutating calls are kept (reads are cheap to serve again and
their answers large), the last :data:`KEPT` of them. SQS is left out: its calls are the
benchmarks' hot path, and a message sent twice is what SQS's at-least-once delivery
allows anyway.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

#: Successful answers kept for replay, the newest.
KEPT = 2000

#: Actions that read (never kept).
_READS = ("Describe", "List", "Get")

_LOCK = threading.Lock()
_answers: "OrderedDict[str, tuple[str, list[tuple[str, str]], bytes]]" = OrderedDict()


def _invocation(environ: dict[str, Any]) -> str:
    return environ.get("HTTP_AMZ_SDK_INVOCATION_ID", "")


def keeps(service: str, action: str) -> bool:
    """Whether answers to ``service``'s ``action`` are kept for replay."""
    return service != "sqs" and not action.startswith(_READS)


def recall(environ: dict[str, Any], attempt: int) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """The answer an earlier attempt of this retry (``attempt`` > 1) got, if kept."""
    invocation = _invocation(environ)
    if attempt <= 1 or not invocation:
        return None
    with _LOCK:
        return _answers.get(invocation)


def remember(environ: dict[str, Any], status: str, headers: list[tuple[str, str]], body: bytes) -> None:
    """Keeps a successful answer under the request's invocation id."""
    invocation = _invocation(environ)
    if not invocation or not status.startswith("2"):
        return
    with _LOCK:
        _answers[invocation] = (status, list(headers), body)
        _answers.move_to_end(invocation)
        while len(_answers) > KEPT:
            _answers.popitem(last=False)


def reset() -> None:
    with _LOCK:
        _answers.clear()
