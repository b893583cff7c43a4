"""DynamoDB TransactWriteItems without a deep copy of every item of the tables it writes.

moto 5.2.5 deep-copies each table a transaction writes, before the first write, to put it
back if an operation fails (a condition, a validation). moto took that copy once per item
(a 100-item transaction copied the table 100 times); it is now taken once per table. Even
once, it costs time in proportion to the table: with the ledger at 4,000 items a
transaction of 100 Puts took ~0.5 s of the emulator's lock (bench_calls.py's DynamoDB
figures; moto's ``Item.__deepcopy__`` is most of it), and the ledger only grows (moto never
expires items).

The copy is only ever used to roll back. For a table with a hash key only and no stream
(the ledger's kind), the copy is assembled instead from a deep copy of the table without
its items, a shallow copy of its item map (same class, same order, the same item objects)
and deep copies of the items the transaction's operations name (taken before any
operation runs: an operation writes only the item it names; moto refuses a transaction
naming an item twice). An item no operation names is never changed by the transaction, so
sharing it is safe: when the transaction ends, the live table or the copy is dropped.
Any other transaction (a table with a range key, whose lookups add entries to the map; a
stream, which writes add records to; a table named otherwise than moto's own table name;
a key that cannot be read) gets moto's full copy, once per table.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any

_state = threading.local()
_real_deepcopy = copy.deepcopy


def _named_keys(backend: Any, transact_items: Any) -> dict[int, list[Any]] | None:
    """Per table (by id), the hash keys the operations name; None: take full copies."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    named: dict[int, list[Any]] = {}
    for item in transact_items:
        if not isinstance(item, dict) or len(item) != 1:
            return None
        kind, op = next(iter(item.items()))
        name = op.get("TableName") if isinstance(op, dict) else None
        table = backend.tables.get(name) if isinstance(name, str) else None
        if table is None or table.range_key_attr is not None or table.stream_shard is not None:
            return None
        try:
            key = DynamoType((op["Item"] if kind == "Put" else op["Key"])[table.hash_key_attr])
            hash(key)
        except Exception:  # moto answers what is wrong with it; the full copy is moto's
            return None
        named.setdefault(id(table), []).append(key)
    return named


def _snapshot(table: Any, keys: list[Any]) -> Any:
    """What ``copy.deepcopy(table)`` gives, as far as a transaction naming `keys` can tell."""
    items = table.items
    table.items = defaultdict(items.default_factory) if isinstance(items, defaultdict) else type(items)()
    try:
        shell = _real_deepcopy(table)
    finally:
        table.items = items
    kept = copy.copy(items)
    for key in keys:
        if key in kept:
            kept[key] = _real_deepcopy(kept[key])
    shell.items = kept
    return shell


def deepcopy(obj: Any, memo: Any = None) -> Any:
    """``copy.deepcopy`` as moto's DynamoDB models see it: one copy (or snapshot) per table
    per transaction, for the rollback."""
    from moto.dynamodb.models.table import Table

    copies = getattr(_state, "tables", None)
    if copies is None or not isinstance(obj, Table):
        return _real_deepcopy(obj, memo)
    if id(obj) not in copies:
        named = _state.named
        if named is not None and id(obj) in named:
            copies[id(obj)] = _snapshot(obj, named[id(obj)])
        else:
            copies[id(obj)] = _real_deepcopy(obj, memo)
    return copies[id(obj)]


class _Copy:
    """What moto.dynamodb.models sees as ``copy``: this module's deepcopy, the rest real."""

    def __getattr__(self, name: str) -> Any:
        return deepcopy if name == "deepcopy" else getattr(copy, name)


def install() -> None:
    from moto.dynamodb import models

    models.copy = _Copy()  # type: ignore[assignment]
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        _state.tables = {}
        _state.named = _named_keys(self, transact_items)
        try:
            return original(self, transact_items)
        finally:
            _state.tables = _state.named = None

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
