"""One stored notification with its event decoded on first use: what tracked readers and the ledger read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import Notification

from projections.fast_uuid import uuid_from_bytes

_UNDECODED = object()


class Recorded:
    """One notification as stored, with its event decoded on first use.

    ``state`` is the bytes exactly as the recorder holds them (personal data sealed, as written),
    which is what a tamper-evident ledger hashes; ``event`` is what the mapper decodes from them,
    only when a reader asks (the ledger and the audit log read the few fields they need from
    ``state`` directly where they can: decoding is most of the cost of reading the log). Readers at
    the same place share one list of these, so an event is decoded at most once for all of them.
    """

    __slots__ = ("_decode", "_event", "_originator_id", "notification_id", "originator_version", "state", "topic")

    def __init__(
        self, notification: Notification, decode: Callable[[Notification], Any], event: Any = _UNDECODED
    ) -> None:  # fmt: skip
        self.notification_id: int = notification.id
        self._originator_id: Any = notification.originator_id
        self.originator_version: int = notification.originator_version
        self.topic: str = notification.topic
        self.state: bytes = notification.state
        self._decode = decode
        self._event = event

    @classmethod
    def of(cls, row: Sequence[Any], decode: Callable[[Notification], Any]) -> Recorded:
        """A record from a row ``(id, originator id, version, topic, state)``; an id of 16 raw bytes is a UUID."""
        record = cls.__new__(cls)
        record.notification_id, record._originator_id, record.originator_version, record.topic, record.state = row
        record._decode, record._event = decode, _UNDECODED
        return record

    @property
    def originator_id(self) -> UUID | str:
        """The aggregate's id (a UUID where the recorder stores one)."""
        oid = self._originator_id
        if isinstance(oid, bytes):
            oid = self._originator_id = uuid_from_bytes(oid)
        return cast("UUID | str", oid)

    @property
    def event(self) -> Any:
        """The domain event, decoded by the application's mapper (once)."""
        if self._event is _UNDECODED:
            parts = getattr(self._decode, "decode_parts", None)  # the fast decoder needs no Notification made
            if parts is not None:
                self._event = parts(self.topic, self.state, self.originator_id, self.originator_version,
                                    self._notification)  # fmt: skip
            else:
                self._event = self._decode(self._notification())
        return self._event

    def _notification(self) -> Notification:
        return Notification(id=self.notification_id, originator_id=self.originator_id,
                            originator_version=self.originator_version, topic=self.topic, state=self.state)  # fmt: skip


def recorded(notification: Notification, decode: Callable[[Notification], Any]) -> Recorded:
    """The stored notification; its event is decoded by ``decode`` (the application's mapper) when used."""
    return Recorded(notification, decode)
