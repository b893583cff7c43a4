"""Shortcuts for what moto 5.2.5 recomputes on every request, with the same answers.

Each AWS request, moto lists its own package directory (``backends.list_of_moto_modules``:
one ``listdir`` and ~150 ``stat`` calls) to route the request, and introspects the
response class's methods (``method_names_from_class``) to find the action. Together that
is about a fifth of what an emulated DescribeInstances costs, and the emulator's lock is
held meanwhile. The results depend only on the installed moto, so they are computed once.

DescribeTags with a ``resource-id`` filter of exact ids (the reactor's read of which
in-service proxies carry the proxy tag) does the same walk: it reads those resources'
rows only.

An EC2 resource's tags (``TaggedEC2Resource.get_tags``) are read by moto through
``describe_tags`` with a ``resource-id`` filter, which matches a regular expression
against every tag of every resource: DescribeInstances with a tag filter, or rendering
the instances it returns, then costs time in the square of the instances the emulator
ever ran (terminated ones stay listed). A benchmark of a few hundred scaling cycles saw
one such call hold the lock 40-60 ms. The tags are read straight from the backend's
table instead, in the same form and order (an id with a wildcard character still goes
through ``describe_tags``, whose filter would treat it as a pattern).

A DynamoDB ``TransactWriteItems`` keeps a copy of each table it writes, to put back if a
condition fails; moto 5.2.5 takes that deep copy once per item instead of once per
table, so a 100-item transaction copied the table 100 times (a ledger of 2,000 items:
about 2 s per call, under the lock). ``dynamodb_rollback`` takes one per table, and for
the ledger's kind of table copies only the items the transaction names. Each condition
expression of a transaction was then parsed three times per item (its check, and twice in
``put_item``): about half of what a 100-Put transaction costs. The parsed expression
(moto's ``Op`` tree, which evaluating never changes) is kept per (expression, attribute
names, attribute values).

Serializing a response walks the botocore shape and, for every member of every object,
asks six alias providers which attribute names to try (``AttributePicker
.get_possible_keys``): a sixth of an emulated DescribeInstances. The answer depends only on
the shape (botocore's shapes live as long as moto's cached service model), the member's
key and the object's class, so it is computed once per such triple. Likewise xmltodict
checks every element name of every response for characters XML forbids; the names come
from the model, so each valid one is checked once.

SQS ReceiveMessage checks each message it hands out against the queue's retention period
by asking ``get_queue_attributes`` for it, which builds every attribute of the queue (three
times), counting the messages in flight and delayed on the way: a receive costs time in
the square of the queue's backlog, and a backlog of a few thousand host reports held the
queue's lock for seconds. The period is read from the queue directly. SendMessage reads
one attribute (``ContentBasedDeduplication``) the same way, through every attribute: while
a message is sent, the three message counts (the only attributes that walk the messages)
are not counted.

DeleteMessage finds its message by walking the whole queue twice, asking each message for
a fresh list of every receipt handle it ever had; DeleteMessageBatch does that once per
entry. With the inbox's backlog of in-flight host reports, a batch of 100 deletes walked
hundreds of thousands of messages under the queue's lock. A batch now walks the queue
once for all its entries, and a single delete once. A long poll woken by a new message
asked whether any message was visible by listing every visible one, from the oldest
(the in-flight ones come first); it looks from the newest and stops at the first.

A queue's visible messages (``Queue.messages``: what every ReceiveMessage walks, in flight
ones included) were found by reading the clock twice per message, and moto's clock
(``unix_time_millis``: datetimes built and subtracted) costs about 6 µs a read: a receive
of 10 from an inbox holding 300 host reports took 3.3 ms, 9.9 ms at 1,000. The clock is
read once per walk. Each message received gets a new receipt handle of 185 random
letters, drawn one call at a time (about a third of the rest); they are drawn in one call
from the same generator: 0.58 and 0.63 ms per receive (receives of 10 until the queue is
drained, in one process).

Every answer's body went through a regular expression with a look-behind (``_enrich_response``
puts the request id between ``<RequestId>`` tags of an XML answer) that tries each position
of the body: a BatchGetItem of a dozen ledger items (about 100 KB of JSON) spent about a
millisecond there, a tenth of its cost (py-spy). A body without ``<RequestId>`` has nothing
for it to replace, so it is left as it is without the scan.
"""

from __future__ import annotations

from typing import Any, Callable

from . import dynamodb_rollback, serialize_speed


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

    _describe_tags_by_id()
    _memoize_possible_keys()
    _memoize_valid_names()
    serialize_speed.install()
    dynamodb_rollback.install()
    _memoize_conditions()
    _retention_from_the_queue()
    _no_counting_while_sending()
    _fewer_walks_of_the_queue()
    _one_clock_read_per_queue_walk()
    _no_request_id_scan_without_the_tag()


def _one_clock_read_per_queue_walk() -> None:
    from moto.sqs import models

    models.Queue.messages = property(visible_messages)  # type: ignore[method-assign,assignment]
    models.generate_receipt_handle = receipt_handle


def visible_messages(queue: Any) -> list[Any]:
    """moto's ``Queue.messages`` (the messages neither in flight nor delayed, in order), the
    clock read once."""
    from moto.core.utils import unix_time_millis

    now = unix_time_millis()
    return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]


# moto's receipt handles: 185 lowercase letters (``moto.sqs.utils.generate_receipt_handle``).
RECEIPT_HANDLE_LENGTH = 185
RECEIPT_HANDLE_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def receipt_handle() -> str:
    """A receipt handle as moto makes one, from moto's (seedable) generator in one call."""
    from moto.moto_api._internal import mock_random

    return "".join(mock_random.choices(RECEIPT_HANDLE_LETTERS, k=RECEIPT_HANDLE_LENGTH))


def _no_request_id_scan_without_the_tag() -> None:
    from moto.core.responses import BaseResponse
    from moto.utilities.aws_headers import gen_amzn_requestid_long

    original = BaseResponse._enrich_response

    def enrich(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
        if isinstance(body, str) and "<RequestId>" not in body:
            # What the original does, but the substitution that cannot match.
            if "status" in headers:
                headers["status"] = str(headers["status"])
            gen_amzn_requestid_long(headers)
            return headers, body
        return original(headers, body)

    BaseResponse._enrich_response = staticmethod(enrich)  # type: ignore[method-assign]


class _TagView:
    """The part of moto's TagBackend that ``describe_tags`` reads: its table of tags."""

    def __init__(self, tags: dict[str, dict[str, str]], valid: list[str]) -> None:
        self.tags = tags
        self.VALID_TAG_FILTERS = valid


def tags_of_ids(original: Callable[..., Any], backend: Any, filters: dict[str, list[str]] | None) -> Any:
    """``describe_tags`` (moto's, ``original``) of ``backend``: with a ``resource-id``
    filter of exact ids (fnmatch.translate anchors them), the same rows in the same order
    from the resources named, instead of every pattern against every tag of every
    resource (a DescribeTags of 100 proxies among 1,100 instances held the emulator's lock
    about 100 ms in scale-bench)."""
    ids = (filters or {}).get("resource-id")
    if not ids or any(c in i for i in ids for c in "*?[]\\"):
        return original(backend, filters)
    wanted = set(ids)
    table = {rid: tags for rid, tags in list(backend.tags.items()) if rid in wanted}
    rest = {k: v for k, v in (filters or {}).items() if k != "resource-id"}
    return original(_TagView(table, backend.VALID_TAG_FILTERS), rest)


def _describe_tags_by_id() -> None:
    from moto.ec2.models.tags import TagBackend

    original = TagBackend.describe_tags

    def describe_tags(self: Any, filters: dict[str, list[str]] | None = None) -> Any:
        return tags_of_ids(original, self, filters)

    describe_tags.moto_original = original  # type: ignore[attr-defined]
    TagBackend.describe_tags = describe_tags  # type: ignore[method-assign]


def _retention_from_the_queue() -> None:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]


def _memoize_conditions() -> None:
    import json

    from moto.dynamodb import comparisons, models
    from moto.dynamodb.models import table

    parse: Callable[..., Any] = comparisons.get_filter_expression
    trees: dict[tuple[Any, str, str], Any] = {}

    def get_filter_expression(expr: Any, names: Any, values: Any) -> Any:
        try:
            key = (expr, json.dumps(names, sort_keys=True), json.dumps(values, sort_keys=True))
            hash(key)
        except (TypeError, ValueError):
            return parse(expr, names, values)
        tree = trees.get(key)
        if tree is None:
            tree = parse(expr, names, values)  # raises on an invalid expression: never kept
            if len(trees) >= 10_000:
                trees.clear()
            trees[key] = tree
        return tree

    models.get_filter_expression = get_filter_expression  # type: ignore[attr-defined]
    table.get_filter_expression = get_filter_expression  # type: ignore[attr-defined]


def _memoize_valid_names() -> None:
    import xmltodict

    check: Callable[[Any, str], None] = xmltodict._validate_name
    valid: set[tuple[Any, str]] = set()

    def validate_name(value: Any, kind: str) -> None:
        if isinstance(value, str) and (value, kind) in valid:
            return
        check(value, kind)  # raises on an invalid name: never remembered
        if isinstance(value, str):
            valid.add((value, kind))

    xmltodict._validate_name = validate_name


def _memoize_possible_keys() -> None:
    from moto.core import serialize

    keys: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def memoized(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], tuple[str, ...]]:
        def get_possible_keys(self: Any, context: Any) -> tuple[str, ...]:
            shape = context.shape
            obj = context.obj
            # Everything the alias providers read: the method, the picker and its providers, the
            # object's class (and class-level Meta), the key, the shape and its parent.
            # Shapes are never freed (moto caches the service model), so ids are stable.
            key = (
                original,
                type(self),
                tuple(self.alias_providers),
                type(obj),
                id(getattr(obj, "Meta", None)),
                context.key,
                id(shape),
                id(getattr(shape, "parent", None)),
            )
            found = keys.get(key)
            if found is None:
                found = keys[key] = tuple(original(self, context))
            return found

        return get_possible_keys

    for cls in (serialize.AttributePicker, serialize.XFormedAttributePicker):
        cls.get_possible_keys = memoized(cls.get_possible_keys)  # type: ignore[method-assign]


def _no_counting_while_sending() -> None:
    import threading

    from moto.sqs.models import Queue, SQSBackend

    sending = threading.local()

    def uncounted(count: Any) -> property:
        def get(self: Any) -> int:
            return 0 if getattr(sending, "on", False) else int(count.fget(self))

        return property(get)

    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        setattr(Queue, name, uncounted(getattr(Queue, name)))
    original = SQSBackend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.on = True
        try:
            return original(self, *args, **kwargs)
        finally:
            sending.on = False

    SQSBackend.send_message = send_message  # type: ignore[method-assign]


def _fewer_walks_of_the_queue() -> None:
    from moto.sqs.exceptions import ReceiptHandleIsInvalid
    from moto.sqs.models import Queue, SQSBackend

    def delete_handles(queue: Any, handles: set[str]) -> set[str]:
        """Deletes the messages that ever had one of `handles`; the handles found."""
        found: set[str] = set()
        kept = []
        for message in queue._messages:
            mine = handles.intersection(message.all_receipt_handles)
            if mine:
                found.update(mine)
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)
                continue
            kept.append(message)
        if found:
            queue._messages = kept
        return found

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return
        if not delete_handles(self, {receipt_handle}):
            raise ReceiptHandleIsInvalid()

    def delete_message_batch(self: Any, queue_name: str, receipts: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
        queue = self.get_queue(queue_name)
        wanted = {r["ReceiptHandle"] for r in receipts} - queue.deleted_messages
        found = delete_handles(queue, wanted) if wanted else set()
        success: list[str] = []
        errors: list[dict[str, Any]] = []
        for r in receipts:
            handle = r["ReceiptHandle"]
            if handle in found or handle in queue.deleted_messages:
                success.append(r["Id"])
            else:
                errors.append(
                    {
                        "Id": r["Id"],
                        "SenderFault": True,
                        "Code": "ReceiptHandleIsInvalid",
                        "Message": f'The input receipt handle "{handle}" is not a valid receipt handle.',
                    }
                )
        return success, errors

    def wait_for_messages(self: Any, timeout: int) -> None:
        def any_visible() -> bool:
            return any(m.visible and not m.delayed for m in reversed(self._messages))

        with self._messages_lock:
            self._messages_lock.wait_for(any_visible, timeout=timeout)

    Queue.delete_message = delete_message  # type: ignore[method-assign]
    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]
    SQSBackend.delete_message_batch = delete_message_batch  # type: ignore[method-assign]
