"""A faster decode of stored events, giving exactly what the application's mapper gives, or leaving it to it.

eventsourcing's JSON transcoder decodes with the standard library's ``json`` and calls a Python
hook for every JSON object; with the mapper around it that is about 20 us an event, most of what a
tracked reader of every event pays. :func:`fast_decode` wraps the mapper's ``to_domain_event``: it
decodes the stored JSON with msgspec and converts the library's own tagged values itself
(``uuid_hex``, ``datetime_iso``, ``decimal_str``, exactly as its transcodings do), then builds the
event as the mapper does. Anything else (a sealed personal-data value, whose key must be looked up;
an event to upcast; a tag it does not know; bytes msgspec refuses) goes to the mapper unchanged, so
the answer is always the mapper's (tests/projections/test_log_decode.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import msgspec
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Notification,
    UUIDAsHex,
    find_id_convertor,
)
from eventsourcing.utils import resolve_topic

from projections.fast_uuid import uuid_from_hex

Decode = Callable[[Notification], Any]

_STANDARD: dict[str, tuple[type, Callable[[str], Any]]] = {
    "uuid_hex": (UUIDAsHex, uuid_from_hex),
    "datetime_iso": (DatetimeAsISO, datetime.fromisoformat),
    "decimal_str": (DecimalAsStr, Decimal),
}
_json = msgspec.json.Decoder().decode


class _Slow(Exception):
    """Only the mapper can decode this."""


def fast_decode(decode: Decode) -> Decode:
    """``decode`` itself, or a faster equivalent when it is a plain JSON mapper's ``to_domain_event``."""
    mapper = getattr(decode, "__self__", None)
    if isinstance(decode, _FastDecoder) or not isinstance(mapper, Mapper):
        return decode
    if getattr(decode, "__name__", "") != "to_domain_event" or mapper.cipher or mapper.compressor:
        return decode
    transcoder = mapper.transcoder
    if not isinstance(transcoder, JSONTranscoder):
        return decode
    tags = {name: convert for name, (cls, convert) in _STANDARD.items() if type(transcoder.names.get(name)) is cls}
    return _FastDecoder(decode, tags)


class _FastDecoder:
    """The mapper's decode, with msgspec in front for the stored events that need nothing else."""

    def __init__(self, decode: Decode, tags: dict[str, Callable[[str], Any]]) -> None:
        self.decode, self.tags = decode, tags
        self._classes: dict[str, type] = {}
        self._convert_id: dict[tuple[type, type], Callable[[Any], Any]] = {}
        self._shapes: dict[str, _Shape | None] = {}  # learned from a topic's first event (None: it has none)

    def __call__(self, stored: Notification) -> Any:
        return self.decode_parts(stored.topic, stored.state, stored.originator_id, stored.originator_version,
                                 lambda: stored)  # fmt: skip

    def decode_parts(
        self, topic: str, stored: bytes, originator_id: Any, version: int, notification: Callable[[], Notification]
    ) -> Any:
        """The event of a stored notification given by its parts (``notification`` makes it for the mapper)."""
        cls = self._classes.get(topic)
        if cls is None:
            cls = self._classes[topic] = resolve_topic(topic)
        try:
            state = self._state(topic, stored)
        except (_Slow, msgspec.MsgspecError, ValueError, ArithmeticError):
            return self.decode(notification())
        if type(state) is not dict or "class_version" in state or getattr(cls, "class_version", 1) != 1:
            return self.decode(notification())
        id_type = type(originator_id)
        convert = self._convert_id.get((cls, id_type))
        if convert is None:
            convert = self._convert_id[(cls, id_type)] = find_id_convertor(cls, cast(Hashable, id_type))
        state["originator_id"] = convert(originator_id)
        state["originator_version"] = version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

    def _state(self, topic: str, stored: bytes) -> Any:
        """The stored JSON with the tagged values converted: by the topic's shape when the bytes prove it
        holds (see :class:`_Shape`), else by walking it. The shape is learned once, from the first event."""
        value = _json(stored)
        if topic not in self._shapes:
            self._shapes[topic] = _Shape.of(value, stored, self.tags)
        shape = self._shapes[topic]
        if shape is not None and shape.converts(value, stored):
            return value
        return self._plain(value)  # after a partial ``converts``: the values it set are no dicts, left alone

    def _plain(self, value: Any) -> Any:
        """A JSON object or array with the library's tagged objects turned into their values, inner ones
        first (as its object hook does), in place; scalars are left as they are without a call each."""
        tags = self.tags
        # a dict's values are replaced while its items are walked (its size never changes); a list by index
        items: Any = enumerate(value) if type(value) is list else value.items()
        for key, item in items:
            kind = type(item)
            if kind is dict:
                data = item.get("_data_")
                if len(item) == 2 and type(data) is str and "_type_" in item:  # a tagged scalar: the common case
                    convert = tags.get(item["_type_"])
                    if convert is None:
                        raise _Slow
                    value[key] = convert(data)
                else:
                    value[key] = self._plain(item)
            elif kind is list:
                value[key] = self._plain(item)
        if type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value:
            raise _Slow  # a tagged object whose data is not a string: none of the standard ones
        return value


class _Shape:
    """Which top-level values of a topic's stored state are tagged scalars, and how each converts.

    It is used only when the stored bytes prove the state has no other object or array at any depth:
    exactly one ``{`` per tagged value plus the state's own, and no ``[`` (a brace or bracket inside a
    string only makes the count differ: the walk then decides). Anything unexpected also walks.
    """

    __slots__ = ("braces", "fields")

    def __init__(self, fields: tuple[tuple[str, str, Callable[[str], Any]], ...]) -> None:
        self.fields = fields  # (key, tag, convert)
        self.braces = len(fields) + 1

    @classmethod
    def of(cls, value: Any, stored: bytes, tags: dict[str, Callable[[str], Any]]) -> _Shape | None:
        """The shape of a decoded (not yet converted) state, when it is flat enough to have one."""
        if type(value) is not dict or "_type_" in value or b"[" in stored:
            return None
        fields = []
        for key, item in value.items():
            if type(item) is dict:
                tag, data = item.get("_type_"), item.get("_data_")
                if len(item) != 2 or type(tag) is not str or type(data) is not str or tag not in tags:
                    return None
                fields.append((key, tag, tags[tag]))
        shape = cls(tuple(fields))
        return shape if stored.count(b"{") == shape.braces else None

    def converts(self, value: Any, stored: bytes) -> bool:
        """Convert ``value``'s tagged values in place if it has this shape; False where it may not."""
        if type(value) is not dict or "_type_" in value or stored.count(b"{") != self.braces or b"[" in stored:
            return False
        for key, tag, convert in self.fields:
            item = value.get(key)
            if type(item) is not dict or len(item) != 2 or item.get("_type_") != tag:
                return False
            data = item.get("_data_")
            if type(data) is not str:
                return False
            value[key] = convert(data)
        return True
