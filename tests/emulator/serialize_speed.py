"""A cheaper walk of moto 5.2.5's response serializer and XML output, with the same answers.

Where the time went (bench_calls.py and cProfile, README "Speed"): an emulated
DescribeInstances of 102 instances cost ~150 ms of the emulator's one lock (CPU, median),
nearly all of it in ``moto.core.serialize``. For each of the ~14,000 members it looks up
per listing, the serializer builds an ``AttributePickerContext`` (joining the path walked
so far), ``AttributePicker.__call__`` tries the member's possible attribute names, then
compares the member's dotted path with every response transformer of the service (EC2:
20, with ``str.endswith``: ~280,000 comparisons per listing, whose result depends only on
the path); then ``xmltodict.unparse`` renders the result through SAX calls (a third).

Here, for moto's own pickers (``AttributePicker``/``XFormedAttributePicker`` with their
own ``__call__``) and serializers that keep ``ResponseSerializer``'s structure member
handling:

- ``_serialize_type_structure`` follows a plan per (structure shape and path, object
  class and its ``Meta``, picker): per member, in the shape's order, the attribute names
  to try (what ``get_possible_keys`` gives: everything the alias providers read is in the
  key) and the transformer that applies (the first whose name ends the member's path, as
  ``__call__``'s loop finds it; the function itself is read from the live table, as moto
  replaces some, e.g. CreateVpcPeeringConnection's). Per object only the attribute reads
  remain, in moto's order and with moto's ``get_value`` rules;
- ``get_value`` (other callers) uses the same memos;
- ``unparse`` writes the XML text directly, as xmltodict would (below).

Anything else goes through moto's code unchanged. ``test_speedups.py`` serializes every
answer of a range of EC2, Auto Scaling, SSM, SQS and DynamoDB calls both ways and compares
them byte for byte, so a moto upgrade that changes shapes or behaviour fails there.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from xml.sax.saxutils import escape, quoteattr

import xmltodict
from moto.core.utils import MISSING
from moto.core.utils import get_value as dotted_value

# The memos below, keyed by ids of botocore shapes: moto caches its service models (and so
# their shapes) for the life of the process, so an id never names two shapes.
_names: dict[tuple[Any, ...], tuple[tuple[str, bool], ...]] = {}
_transform_tables: dict[tuple[str, ...], dict[str, str | None]] = {}
_plans: dict[tuple[Any, ...], tuple[Any, tuple[tuple[str, Any, Any, str | None], ...]]] = {}
# Paths include the keys of map members (e.g. DynamoDB attribute names): a memo keyed by
# path is emptied when it grows past this, rather than grow with the data.
MEMO_LIMIT = 50_000


def _picker_memo(picker: Any) -> tuple[tuple[Any, ...], dict[str, str | None]]:
    """(alias key, transformer memo) of a picker, computed once per picker (per response)."""
    memo = picker.__dict__.get("_ext_memo")
    if memo is None:
        order = tuple(picker.response_transformers)
        table = _transform_tables.setdefault(order, {})
        memo = picker._ext_memo = ((type(picker), tuple(picker.alias_providers)), table)
    return memo


def _transform_name(transformers: dict[str, Any], table: dict[str, str | None], key_path: str) -> str | None:
    """The first transformer name that ends `key_path` (as AttributePicker.__call__ picks)."""
    try:
        return table[key_path]
    except KeyError:
        pass
    found = next((name for name in transformers if key_path.endswith(name)), None)
    if len(table) >= MEMO_LIMIT:
        table.clear()
    table[key_path] = found
    return found


def _first_value(obj: Any, names: tuple[tuple[str, bool], ...]) -> Any:
    """The value of the first of `names` `obj` has, else None: moto's ``get_value(obj, name,
    MISSING)`` for each (``moto.core.utils``), inlined for names without a dot."""
    indexable = hasattr(obj, "__getitem__")
    for name, has_dot in names:
        if has_dot:
            found = dotted_value(obj, name, MISSING)
        elif indexable:
            try:
                found = obj[name]
            except (KeyError, IndexError, TypeError, AttributeError):
                continue
        else:
            found = getattr(obj, str(name), MISSING)
        if found is not MISSING:
            return found
    return None


def _possible(self: Any, picker: Any, alias: Any, value: Any, key: str, shape: Any) -> tuple[tuple[str, bool], ...]:
    """The attribute names to try, as ``picker.get_possible_keys`` gives them; (name, dotted)."""
    entry = (alias, type(value), id(getattr(value, "Meta", None)), key, id(shape), id(getattr(shape, "parent", None)))
    found = _names.get(entry)
    if found is None:
        context = _moto["context"](
            obj=value,
            key=key,
            shape=shape,
            operation_model=self.operation_model,
            service_model=self.operation_model.service_model,
            key_path=".".join(self.path),
        )
        found = _names[entry] = tuple(
            (k, not isinstance(k, int) and "." in k) for k in picker.get_possible_keys(context)
        )
    return found


def get_value(self: Any, value: Any, key: str, shape: Any) -> Any:
    """``ResponseSerializer.get_value``: what ``picker(AttributePickerContext(...))`` answers."""
    picker = self._value_picker
    kind = type(picker)
    if _moto["pickers"].get(kind) is not kind.__call__:
        return _moto["get_value"](self, value, key, shape)
    alias, table = _picker_memo(picker)
    result = _first_value(value, _possible(self, picker, alias, value, key, shape))
    transformers = picker.response_transformers
    if transformers:
        name = _transform_name(transformers, table, ".".join(self.path) + "." + key)
        if name is not None:
            result = transformers[name](result)
    return result


Step = tuple[str, Any, tuple[tuple[str, bool], ...], "str | None", "str | None"]


def _text_leaf(cls: type, key: str, shape: Any) -> str | None:
    """The element name of a string member whose serializing (``_serialize``, then
    ``BaseXMLSerializer``'s ``_serialize_type_string`` and ``_default_serialize``) only
    writes ``str(value)`` under it; None where that is not moto's own path."""
    if (
        shape.type_name != "string"
        or shape.serialization.get("xmlNamespace")
        or shape.serialization.get("xmlAttribute", False)
        or cls._serialize is not _moto["serialize"]
        or getattr(cls, "_serialize_type_string", None) is not _moto["xml_string"]
        or cls._default_serialize is not _moto["xml_default"]
        or cls.get_serialized_name is not _moto["serialized_name"]
    ):
        return None
    return str(shape.serialization.get("name", key))


def _plan(self: Any, picker: Any, value: Any, shape: Any) -> tuple[Step, ...]:
    """Per member of `shape`, in order: (key, shape, attribute names to try, transformer
    name or None, text element name or None), for `value`'s class at this path; what
    get_value and _serialize work out per member."""
    alias, table = _picker_memo(picker)
    path = ".".join(self.path)
    cls = type(self)
    entry = (cls, alias, id(table), type(value), id(getattr(value, "Meta", None)), id(shape), path)
    members = shape.members
    found = _plans.get(entry)
    if found is None or found[0] is not members:
        transformers = picker.response_transformers
        steps = []
        for member_key, member_shape in members.items():
            member_shape.parent = shape
            names = _possible(self, picker, alias, value, member_key, member_shape)
            name = _transform_name(transformers, table, f"{path}.{member_key}") if transformers else None
            steps.append((member_key, member_shape, names, name, _text_leaf(cls, member_key, member_shape)))
        if len(_plans) >= MEMO_LIMIT:
            _plans.clear()
        found = _plans[entry] = (members, tuple(steps))
    return found[1]


def serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
    """``ResponseSerializer._serialize_type_structure`` with its members' ``get_value`` and
    ``_serialize_structure_member`` (and the text of string members) done from the plan,
    where those are moto's own."""
    picker, cls = self._value_picker, type(self)
    if (
        value is None
        or cls._serialize_structure_member is not _moto["structure_member"]
        or cls.get_value is not get_value
        or _moto["pickers"].get(type(picker)) is not type(picker).__call__
    ):
        return _moto["structure"](self, serialized, value, shape, key)
    wrapper = self.MAP_TYPE() if key else serialized
    transformers = picker.response_transformers
    for member_key, member_shape, names, name, text in _plan(self, picker, value, shape):
        member_shape.parent = shape
        member_value = _first_value(value, names)
        if name is not None:
            member_value = transformers[name](member_value)
        if member_value is None:
            continue
        if text is not None:
            wrapper[text] = str(member_value)
        else:
            self._serialize(wrapper, member_value, member_shape, member_key)
    if key:
        self._default_serialize(serialized, wrapper, shape, key)


# --------------------------------------------------------------------------- XML output
#
# moto's XML serializers render the serialized dict with ``xmltodict.unparse``, which
# drives a SAX ``XMLGenerator`` one call per element, attribute and text: about a third of
# an emulated DescribeInstances once the walk above is cheaper. ``_unparse`` writes the same
# text directly for what moto gives it (str keys; dict, list, tuple, str, None and scalar
# values; ``@attributes``, ``#text``). Anything else (comments, ``@xmlns`` maps, other
# iterables, options other than moto's, or any error) is left to xmltodict itself, from the
# start: the fast path changes nothing before it gives up.


class _Unsupported(Exception):
    pass


_valid_names: set[str] = set()  # element names xmltodict found valid (they come from the models)


def _element(key: Any, value: Any, out: list[str], depth: int, full_document: bool) -> None:
    """xmltodict ``_emit`` (default options, short empty elements) into `out`.
    ``out[-1] == ""`` marks a start tag not yet closed (``<key``, then ``>`` or ``/>``)."""
    if not isinstance(key, str) or key == "#comment":
        raise _Unsupported(key)
    if key not in _valid_names:
        xmltodict._validate_name(key, "element")  # raises on an invalid name
        if len(_valid_names) >= MEMO_LIMIT:
            _valid_names.clear()
        _valid_names.add(key)
    if isinstance(value, (str, bytes, bytearray, memoryview, dict)) or not hasattr(value, "__iter__"):
        value = [value]
    elif not isinstance(value, (list, tuple)):
        raise _Unsupported(type(value))  # e.g. a generator: xmltodict must see it unconsumed
    for index, v in enumerate(value):
        if full_document and depth == 0 and index > 0:
            raise ValueError("document with multiple roots")
        if v is None:
            v = {}
        elif not isinstance(v, (dict, str)):
            v = xmltodict._convert_value_to_string(v)
        if isinstance(v, dict):
            _one_element(key, v, out, depth)
            continue
        # Text only: start tag, the text if any (closing the start tag), end tag.
        if out and out[-1] == "":
            out[-1] = ">"
        out.append(f"<{key}>{escape(v)}</{key}>" if v else f"<{key}/>")


def _one_element(key: str, v: dict[Any, Any], out: list[str], depth: int) -> None:
    cdata, attrs, children = None, [], []
    for ik, iv in v.items():
        if ik == "#text":
            cdata = None if iv is None else xmltodict._convert_value_to_string(iv)
        elif isinstance(ik, str) and ik.startswith("@"):
            if ik == "@xmlns" and isinstance(iv, dict):
                raise _Unsupported(ik)
            iv = "" if iv is None else iv if isinstance(iv, str) else xmltodict._convert_value_to_string(iv)
            xmltodict._validate_name(ik[1:], "attribute")
            attrs.append(f" {ik[1:]}={quoteattr(iv)}")
        elif not (isinstance(iv, list) and not iv):
            children.append((ik, iv))
    _close_start(out)
    out.append("<" + key)
    out.extend(attrs)
    out.append("")
    for child_key, child_value in children:
        if type(child_value) is str and child_key in _valid_names:  # the commonest: text
            if out[-1] == "":
                out[-1] = ">"
            out.append(f"<{child_key}>{escape(child_value)}</{child_key}>" if child_value else f"<{child_key}/>")
        else:
            _element(child_key, child_value, out, depth + 1, False)
    if cdata:
        _close_start(out)
        out.append(escape(cdata))
    if out[-1] == "":
        out[-1] = "/>"
    else:
        out.append(f"</{key}>")


def _close_start(out: list[str]) -> None:
    if out and out[-1] == "":
        out[-1] = ">"


def _unparse_fast(input_dict: Any, full_document: bool) -> str:
    out: list[str] = ['<?xml version="1.0" encoding="utf-8"?>\n'] if full_document else []
    seen_root = False
    for key, value in input_dict.items():
        if key != "#comment" and full_document and seen_root:
            raise ValueError("Document must have exactly one root.")
        _element(key, value, out, 0, full_document)
        seen_root = seen_root or key != "#comment"
    if full_document and not seen_root:
        raise ValueError("Document must have exactly one root.")
    return "".join(out)


def unparse(
    input_dict: Any,
    output: Any = None,
    encoding: str = "utf-8",
    full_document: bool = True,
    short_empty_elements: bool = False,
    **kwargs: Any,
) -> Any:
    """``xmltodict.unparse``; the fast path for the options moto's serializers use."""
    if output is None and encoding == "utf-8" and short_empty_elements and isinstance(input_dict, dict):
        if not any(kwargs.values()) and set(kwargs) <= {"pretty"}:
            try:
                return _unparse_fast(input_dict, full_document)
            except Exception:  # xmltodict says what is wrong (or does what the fast path does not)
                pass
    return xmltodict.unparse(
        input_dict,
        output=output,
        encoding=encoding,
        full_document=full_document,
        short_empty_elements=short_empty_elements,
        **kwargs,
    )


class _XmlToDict:
    """What moto.core.serialize sees as ``xmltodict``: this module's unparse, the rest real."""

    unparse = staticmethod(unparse)

    def __getattr__(self, name: str) -> Any:
        return getattr(xmltodict, name)


# --------------------------------------------------------------------------- install

_moto: dict[str, Any] = {}  # moto's own get_value, pickers (class -> its __call__), context class


def install() -> None:
    from moto.core import serialize

    if not _moto:
        _moto.update(
            get_value=serialize.ResponseSerializer.get_value,
            pickers={c: c.__call__ for c in (serialize.AttributePicker, serialize.XFormedAttributePicker)},
            context=serialize.AttributePickerContext,
            structure=serialize.ResponseSerializer._serialize_type_structure,
            structure_member=serialize.ResponseSerializer._serialize_structure_member,
            serialize=serialize.ResponseSerializer._serialize,
            xml_string=serialize.BaseXMLSerializer._serialize_type_string,
            xml_default=serialize.BaseXMLSerializer._default_serialize,
            serialized_name=serialize.ResponseSerializer.get_serialized_name,
        )
    serialize.ResponseSerializer.get_value = get_value  # type: ignore[method-assign]
    serialize.ResponseSerializer._serialize_type_structure = serialize_type_structure  # type: ignore[method-assign]
    serialize.xmltodict = _XmlToDict()  # type: ignore[assignment]


def uninstall() -> None:
    """Back to moto's own serializer (the self-test's in-process moto)."""
    from moto.core import serialize

    if _moto:
        serialize.ResponseSerializer.get_value = _moto["get_value"]  # type: ignore[method-assign]
        serialize.ResponseSerializer._serialize_type_structure = _moto["structure"]  # type: ignore[method-assign]
        serialize.xmltodict = xmltodict  # type: ignore[assignment]


@contextlib.contextmanager
def unpatched() -> Iterator[None]:
    """moto's own serializer walk and xmltodict while inside (for tests and measurements in
    one process: not safe while another thread serializes)."""
    from moto.core import serialize

    base = serialize.ResponseSerializer
    patched = base.get_value, base._serialize_type_structure, serialize.xmltodict
    uninstall()
    try:
        yield
    finally:
        base.get_value, base._serialize_type_structure, serialize.xmltodict = patched  # type: ignore[method-assign]
