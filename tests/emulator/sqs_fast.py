"""SQS's three hot calls answered straight from moto's SQS model, without its request layers.

A benchmark of 100 proxies sends about 400 SQS requests a step (the proxies' reports, the
pollers' receives and deletes), and py-spy (``--gil``, ``bench_calls.py --only sqs``-like
load) showed where the emulator's interpreter went for them: about 2 ms per request, of
which moto's SQS model (the queue, the message) was a sixth; the rest was Flask's dispatch,
moto's generic request parsing (``BaseResponse.setup_class``, ``parse_parameters``) and its
response serializer, per request. Under a fleet's burst that interpreter time is what
every other AWS call waits behind (one Python interpreter serves them all).

For the AWS JSON protocol requests of ``SendMessage``, ``ReceiveMessage`` and
``DeleteMessageBatch`` in their plain forms (what the agent, the reactor and the
harness's event source mapping send), :func:`answer` reads the JSON body,
calls the same moto SQS backend methods moto's ``SQSResponse`` calls, with the same
account, region and ``SenderId`` (:mod:`sqs_queues`), and writes the same JSON answer
(``test_control_path.py`` compares both paths, answer by answer). Everything else (FIFO queues,
message attributes, a missing queue, an invalid parameter, the query protocol, any other
action) returns ``None`` before anything is changed and moto answers it as before, errors
included. Called under :data:`sqs_queues.LOCK`, as moto's path is.
"""

from __future__ import annotations

import io
import json
import os
import random
import string
from typing import Any, Callable, Iterable

from . import sqs_queues

CONTENT_TYPE = "application/x-amz-json-1.0"
SEND, RECEIVE, DELETE_BATCH = "AmazonSQS.SendMessage", "AmazonSQS.ReceiveMessage", "AmazonSQS.DeleteMessageBatch"
# The request keys each plain form may carry; any other key goes to moto.
_KEYS = {
    SEND: {"QueueUrl", "MessageBody", "DelaySeconds"},
    RECEIVE: {
        "QueueUrl",
        "MaxNumberOfMessages",
        "WaitTimeSeconds",
        "AttributeNames",
        "MessageSystemAttributeNames",
        "MessageAttributeNames",
    },
    DELETE_BATCH: {"QueueUrl", "Entries"},
}
# The system attributes moto's ``SQSResponse.receive_message`` knows, in the order its
# answer lists them.
_SYSTEM_ATTRIBUTES = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "SequenceNumber",
)
DEFAULT_RECEIVED = 1  # moto's DEFAULT_RECEIVED_MESSAGES
# Off: every request goes through moto (the self-test compares both).
ENABLED = True


def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """The answer to a plain hot SQS request, or ``None`` (nothing changed, the body left
    readable) for moto to answer."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if not ENABLED or target not in _KEYS or not environ.get("CONTENT_TYPE", "").startswith(CONTENT_TYPE):
        return None
    raw = _read_body(environ)
    try:
        request = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(request, dict) or not set(request) <= _KEYS[target]:
        return None
    access_key = _access_key(environ)
    found = _queue(environ, access_key, request.get("QueueUrl"))
    if found is None:
        return None
    backend, name, queue = found
    if target == SEND:
        result = _send(access_key, backend, name, request)
    elif target == RECEIVE:
        result = _receive(backend, name, queue, request)
    else:
        result = _delete_batch(backend, name, request)
    if result is None:
        return None
    body = json.dumps(result).encode("utf-8")
    start_response(
        "200 OK",
        [
            ("Content-Type", CONTENT_TYPE),
            ("server", "amazon.com"),
            ("x-amzn-requestid", _request_id()),
            ("Content-Length", str(len(body))),
            ("Access-Control-Allow-Origin", "*"),
        ],
    )
    return [body]


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request's body; ``wsgi.input`` is put back so that moto can read it again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    return raw


def _access_key(environ: dict[str, Any]) -> str:
    """The request's access key as moto reads it (``BaseResponse.get_access_key``: from the
    ``Authorization`` header, else moto's placeholder)."""
    from moto.core.responses import BaseResponse

    auth = environ.get("HTTP_AUTHORIZATION", "")
    key = BaseResponse.access_key_regex.search(auth) if auth else None
    return key.group(1) if key else "AKIAEXAMPLE"


def _queue(environ: dict[str, Any], access_key: str, url: Any) -> tuple[Any, str, Any] | None:
    """The backend, name and queue a standard queue's URL names, for the request's account
    and region as moto finds them (``BaseResponse.get_current_account``,
    ``get_region_from_url``); None for anything else."""
    from moto.core.responses import BaseResponse
    from moto.iam.models import get_account_id_from
    from moto.sqs.exceptions import QueueDoesNotExist
    from moto.sqs.models import sqs_backends

    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "MOTO_ACCOUNT_ID" in os.environ:
        account = os.environ["MOTO_ACCOUNT_ID"]
    elif "HTTP_X_MOTO_ACCOUNT_ID" in environ:
        account = environ["HTTP_X_MOTO_ACCOUNT_ID"]
    else:
        account = get_account_id_from(access_key)
    host = environ.get("HTTP_HOST", "") + environ.get("PATH_INFO", "")
    by_url = BaseResponse.region_regex.search(host)
    by_agent = BaseResponse.region_from_useragent_regex.search(environ.get("HTTP_USER_AGENT", ""))
    if by_url:
        region = by_url.group(1)
    elif by_agent:
        region = by_agent.group(1)
    elif "AWS4" in auth:
        region = auth.split(",")[0].split("/")[2]
    else:
        region = BaseResponse.default_region
    name = url.split("/")[-1]
    try:
        backend = sqs_backends[account][region]
        queue = backend.get_queue(name)
    except (QueueDoesNotExist, KeyError, IndexError):
        return None
    if queue.fifo_queue:
        return None
    return backend, name, queue


def _send(access_key: str, backend: Any, name: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """moto's ``SQSResponse.send_message`` without attributes; None if moto should answer
    (its model refuses before it adds anything: size, delay, characters)."""
    body, delay = request.get("MessageBody"), request.get("DelaySeconds")
    if not isinstance(body, str) or not (delay is None or (isinstance(delay, int) and not isinstance(delay, bool))):
        return None
    sqs_queues.set_sender(sqs_queues.sender_id(access_key))
    try:
        message = backend.send_message(name, body, message_attributes={}, delay_seconds=delay)
    except Exception:  # moto's path raises it again and answers it as AWS would
        return None
    finally:
        sqs_queues.set_sender(None)
    return {"MD5OfMessageBody": message.body_md5, "MessageId": message.id}


def _receive(backend: Any, name: str, queue: Any, request: dict[str, Any]) -> dict[str, Any] | None:
    """moto's ``SQSResponse.receive_message`` for a standard queue whose messages carry no
    message attributes; None if moto should answer (a parameter out of range)."""
    count = request.get("MaxNumberOfMessages", DEFAULT_RECEIVED)
    wait = request.get("WaitTimeSeconds", int(queue.receive_message_wait_time_seconds or 0))
    lists = [request.get(k, []) for k in ("AttributeNames", "MessageSystemAttributeNames", "MessageAttributeNames")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (count, wait)):
        return None
    if not 1 <= count <= 10 or not 0 <= wait <= 20:
        return None
    if not all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in lists):
        return None
    if any(m.message_attributes for m in list(queue._messages)):
        return None  # moto serializes attribute values by type
    names = set(lists[0]) | set(lists[1])
    wanted = [a for a in _SYSTEM_ATTRIBUTES if "All" in names or a in names]
    messages = backend.receive_message(name, count, wait, queue.visibility_timeout, lists[2])
    out = []
    for message in messages:
        msg: dict[str, Any] = {
            "MessageId": message.id,
            "ReceiptHandle": message.receipt_handle,
            "MD5OfBody": message.body_md5,
            "Body": message.body,
        }
        if message.message_attributes:  # sent meanwhile (the queue was checked above)
            msg["MessageAttributes"] = message.message_attributes
            msg["MD5OfMessageAttributes"] = message.attribute_md5
        if wanted:
            msg["Attributes"] = _system_attributes(message, wanted)
        out.append(msg)
    return {"Messages": out} if out else {}


def _system_attributes(message: Any, wanted: list[str]) -> dict[str, str]:
    """The message's system attributes of `wanted` (in moto's order), as moto gives them."""
    attributes: dict[str, str] = {}
    for a in wanted:
        if a == "SenderId":
            attributes[a] = message.sender_id
        elif a == "SentTimestamp":
            attributes[a] = str(message.sent_timestamp)
        elif a == "ApproximateReceiveCount":
            attributes[a] = str(message.approximate_receive_count)
        elif a == "ApproximateFirstReceiveTimestamp":
            attributes[a] = str(message.approximate_first_receive_timestamp)
        elif a == "MessageDeduplicationId" and message.deduplication_id is not None:
            attributes[a] = message.deduplication_id
        elif a == "MessageGroupId" and message.group_id is not None:
            attributes[a] = message.group_id
        elif a == "AWSTraceHeader" and (message.system_attributes or {}).get("AWSTraceHeader"):
            attributes[a] = message.system_attributes["AWSTraceHeader"].get("StringValue")
        elif a == "SequenceNumber" and message.sequence_number is not None:
            attributes[a] = message.sequence_number
    return attributes


def _delete_batch(backend: Any, name: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """moto's ``SQSResponse.delete_message_batch`` for 1 to 10 distinct well-formed
    entries; None if moto should answer (it names what is wrong)."""
    entries = request.get("Entries")
    if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
        return None
    for e in entries:
        if not isinstance(e, dict) or set(e) != {"Id", "ReceiptHandle"}:
            return None
        if not all(isinstance(v, str) for v in e.values()):
            return None
    if len({e["ReceiptHandle"] for e in entries}) != len(entries) or len({e["Id"] for e in entries}) != len(entries):
        return None
    success, failed = backend.delete_message_batch(name, entries)
    return {"Successful": [{"Id": i} for i in success], "Failed": failed}


def _request_id() -> str:
    # moto's x-amzn-requestid: 52 random letters and digits.
    return "".join(random.choices(string.ascii_letters + string.digits, k=52))
