"""Sealing of personal data with one AES-GCM key per data subject (crypto-shredding).

Events hold :class:`PersonalData` values; the :class:`SealingMapper` seals them on the way into
the event store and unseals them on the way out. The keys live in a :class:`KeyStore` outside
the event stream; destroying a subject's key erases that subject's data from every event while
the events themselves (and their hashes in the audit chain) stay untouched. Replay keeps working
and shows :data:`ERASED` instead of the value.

A sealed value that does not open (altered bytes, or a blob moved into another subject's event:
the subject id is the AES-GCM associated data) reads as :data:`UNREADABLE` and is logged as an
error. Raising instead would stop every replay, and the directory that authentication reads,
at that event; reading it as erased would hide the tampering.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import JSONTranscoder, Mapper, Transcoder, Transcoding

ERASED = "<erased>"
UNREADABLE = "<unreadable>"
KEY_BYTES = 32
NONCE_BYTES = 12

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PersonalData:
    """A value that belongs to one data subject (a user id); sealed at rest with that subject's key."""

    subject_id: UUID
    value: str

    @property
    def erased(self) -> bool:
        """True when the subject's key was destroyed and the value is gone."""
        return self.value == ERASED

    @property
    def unreadable(self) -> bool:
        """True when the sealed value failed to open (altered, or moved from another subject)."""
        return self.value == UNREADABLE

    def __str__(self) -> str:
        return self.value


class KeyStore(ABC):
    """Per-subject data keys, kept apart from the events; destroying one erases the subject."""

    def __init__(self) -> None:
        self._cache: dict[UUID, bytes | None] = {}
        self._lock = threading.Lock()

    def key_for(self, subject_id: UUID, *, create: bool) -> bytes | None:
        """The subject's key (None once destroyed); a new one is stored when ``create`` and none exists."""
        if subject_id in self._cache:
            return self._cache[subject_id]
        with self._lock:
            key = self._load(subject_id)
            if key is None:
                if self._was_destroyed(subject_id):
                    self._cache[subject_id] = None
                    return None
                if not create:
                    return None
                key = self._insert(subject_id, AESGCM.generate_key(bit_length=KEY_BYTES * 8))
            self._cache[subject_id] = key
            return key

    def destroy(self, subject_id: UUID) -> None:
        """Erase the subject: its key is overwritten and can never be recreated."""
        with self._lock:
            self._destroy(subject_id)
            self._cache[subject_id] = None

    def destroy_many(self, subject_ids: Sequence[UUID]) -> None:
        """Erase several subjects at once (one transaction where the store can): a batch of due erasures."""
        with self._lock:
            self._destroy_many(list(dict.fromkeys(subject_ids)))
            for subject_id in subject_ids:
                self._cache[subject_id] = None

    def _destroy_many(self, subject_ids: list[UUID]) -> None:
        """One at a time unless the store does better."""
        for subject_id in subject_ids:
            self._destroy(subject_id)

    def forget(self, subject_id: UUID) -> None:
        """Drop the cached key (another process destroyed it): the next use reads the store again."""
        with self._lock:
            self._cache.pop(subject_id, None)

    @abstractmethod
    def _load(self, subject_id: UUID) -> bytes | None: ...

    @abstractmethod
    def _was_destroyed(self, subject_id: UUID) -> bool: ...

    @abstractmethod
    def _insert(self, subject_id: UUID, key: bytes) -> bytes:
        """Store a key unless one exists; return whichever key is stored now."""

    @abstractmethod
    def _destroy(self, subject_id: UUID) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class PersonalDataTranscoding(Transcoding):
    """Encodes :class:`PersonalData` as ``{s: subject, c: base64(nonce|AES-GCM ciphertext)}``.

    Data about an already erased subject is written as ``{s: subject}`` alone: erasure means no new
    data either, yet an admin must still be able to revoke that person's keys or remove them.
    """

    type = PersonalData
    name = "sealed"

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def encode(self, obj: PersonalData) -> dict[str, str]:
        key = self.keys.key_for(obj.subject_id, create=True)
        if key is None:  # an erased subject: store nothing of theirs, and let the command go on
            return {"s": obj.subject_id.hex}
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, obj.value.encode(), obj.subject_id.bytes)
        return {"s": obj.subject_id.hex, "c": base64.b64encode(nonce + sealed).decode()}

    def decode(self, data: dict[str, str]) -> PersonalData:
        subject_id = UUID(data["s"])
        key = self.keys.key_for(subject_id, create=False)
        if key is None or "c" not in data:
            return PersonalData(subject_id, ERASED)
        try:
            blob = base64.b64decode(data["c"], validate=True)
            plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], subject_id.bytes)
            return PersonalData(subject_id, plain.decode())
        except (InvalidTag, ValueError):  # ValueError: bad base64, too short, not UTF-8
            log.error(
                "a sealed value of subject %s does not open: altered or moved; read as %s", subject_id, UNREADABLE
            )
            return PersonalData(subject_id, UNREADABLE)


class SealingMapper(Mapper[UUID]):
    """eventsourcing's mapper with per-subject sealing; upcasting (``class_version``) is unchanged."""

    def __init__(self, transcoder: Transcoder, keys: KeyStore, **kwargs: Any) -> None:
        if not isinstance(transcoder, JSONTranscoder):
            raise TypeError("sealing needs the JSON transcoder")
        transcoder.register(PersonalDataTranscoding(keys))
        super().__init__(transcoder, **kwargs)
        self.keys = keys
