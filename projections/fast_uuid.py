"""UUIDs built from their 16 bytes or 32 hex digits without ``UUID.__init__`` (pure Python, about
1.5 us each: a rebuild builds millions); anything else is left to ``UUID`` itself."""

from __future__ import annotations

import binascii
from uuid import UUID, SafeUUID

_new = object.__new__
_set = object.__setattr__
_unhex = binascii.unhexlify  # strict: hex digits only, no signs, spaces or underscores (unlike int(text, 16))
_UNKNOWN = SafeUUID.unknown


def uuid_from_bytes(raw: bytes) -> UUID:
    """``UUID(bytes=raw)``, the same value and the same kind of object."""
    if len(raw) != 16:
        return UUID(bytes=raw)  # raises as it does
    value = _new(UUID)
    _set(value, "int", int.from_bytes(raw, "big"))
    _set(value, "is_safe", _UNKNOWN)
    return value


def uuid_from_hex(text: str) -> UUID:
    """``UUID(text)``: the fast way for exactly 32 hex digits (how eventsourcing stores them), else ``UUID``'s."""
    if len(text) == 32:
        try:
            return uuid_from_bytes(_unhex(text))
        except (binascii.Error, ValueError):
            pass
    return UUID(text)
