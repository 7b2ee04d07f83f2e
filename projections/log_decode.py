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
from uuid import UUID

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

Decode = Callable[[Notification], Any]

_STANDARD: dict[str, tuple[type, Callable[[str], Any]]] = {
    "uuid_hex": (UUIDAsHex, UUID),
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

    def __call__(self, stored: Notification) -> Any:
        return self.decode_parts(stored.topic, stored.state, stored.originator_id, stored.originator_version,
                                 lambda: stored)  # fmt: skip

    def decode_parts(
        self, topic: str, stored: bytes, originator_id: Any, version: int, notification: Callable[[], Notification]
    ) -> Any:
        """The event of a stored notification given by its parts (``notification`` makes it for the mapper)."""
        cls = resolve_topic(topic)
        try:
            state = self._plain(_json(stored))
        except (_Slow, msgspec.MsgspecError, ValueError, ArithmeticError):
            return self.decode(notification())
        if type(state) is not dict or "class_version" in state or getattr(cls, "class_version", 1) != 1:
            return self.decode(notification())
        convert = find_id_convertor(cls, cast(Hashable, type(originator_id)))
        state["originator_id"] = convert(originator_id)
        state["originator_version"] = version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

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
