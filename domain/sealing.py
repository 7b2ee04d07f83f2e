"""Sealing of personal data with one AES-GCM key per data subject (crypto-shredding).

Events hold :class:`PersonalData` values; the :class:`SealingMapper` seals them on the way into
the event store and unseals them on the way out. The keys live in a :class:`KeyStore` outside
the event stream; destroying a subject's key erases that subject's data from every event while
the events themselves (and their hashes in the audit chain) stay untouched. Replay keeps working
and shows :data:`ERASED` instead of the value.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import JSONTranscoder, Mapper, Transcoder, Transcoding

ERASED = "<erased>"
KEY_BYTES = 32
NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class PersonalData:
    """A value that belongs to one data subject (a user id); sealed at rest with that subject's key."""

    subject_id: UUID
    value: str

    @property
    def erased(self) -> bool:
        """True when the subject's key was destroyed and the value is gone."""
        return self.value == ERASED

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

    def forget_cache(self) -> None:
        """Drop cached keys (another process may have destroyed some)."""
        with self._lock:
            self._cache.clear()

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


class SQLiteKeyStore(KeyStore):
    """Subject keys in their own SQLite file (not the event store's), for the embedded default."""

    _DDL = (
        "CREATE TABLE IF NOT EXISTS subject_keys ("
        "subject_id TEXT PRIMARY KEY, key BLOB, destroyed INTEGER NOT NULL DEFAULT 0)"
    )

    def __init__(self, path: str) -> None:
        super().__init__()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(self._DDL)

    def _load(self, subject_id: UUID) -> bytes | None:
        row = self._db.execute("SELECT key FROM subject_keys WHERE subject_id=?", (str(subject_id),)).fetchone()
        return row[0] if row else None

    def _was_destroyed(self, subject_id: UUID) -> bool:
        row = self._db.execute("SELECT destroyed FROM subject_keys WHERE subject_id=?", (str(subject_id),)).fetchone()
        return bool(row and row[0])

    def _insert(self, subject_id: UUID, key: bytes) -> bytes:
        self._db.execute("INSERT OR IGNORE INTO subject_keys (subject_id, key) VALUES (?, ?)", (str(subject_id), key))
        stored = self._load(subject_id)
        return stored if stored is not None else key

    def _destroy(self, subject_id: UUID) -> None:
        self._db.execute(
            "INSERT INTO subject_keys (subject_id, key, destroyed) VALUES (?, NULL, 1) "
            "ON CONFLICT(subject_id) DO UPDATE SET key=NULL, destroyed=1",
            (str(subject_id),),
        )

    def close(self) -> None:
        self._db.close()


class PostgresKeyStore(KeyStore):
    """Subject keys in a PostgreSQL table of their own (may be a different database or DSN)."""

    def __init__(self, dsn: str, schema: str = "public") -> None:
        super().__init__()
        import psycopg

        self._conn = psycopg.connect(dsn, autocommit=True)
        self._table = f'"{schema}".ownllm_subject_keys'
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            "subject_id uuid PRIMARY KEY, key bytea, destroyed boolean NOT NULL DEFAULT false)"
        )

    def _load(self, subject_id: UUID) -> bytes | None:
        row = self._conn.execute(f"SELECT key FROM {self._table} WHERE subject_id=%s", (subject_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def _was_destroyed(self, subject_id: UUID) -> bool:
        row = self._conn.execute(f"SELECT destroyed FROM {self._table} WHERE subject_id=%s", (subject_id,)).fetchone()
        return bool(row and row[0])

    def _insert(self, subject_id: UUID, key: bytes) -> bytes:
        self._conn.execute(
            f"INSERT INTO {self._table} (subject_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (subject_id, key),
        )
        stored = self._load(subject_id)
        return stored if stored is not None else key

    def _destroy(self, subject_id: UUID) -> None:
        self._conn.execute(
            f"INSERT INTO {self._table} (subject_id, key, destroyed) VALUES (%s, NULL, true) "
            "ON CONFLICT (subject_id) DO UPDATE SET key=NULL, destroyed=true",
            (subject_id,),
        )

    def close(self) -> None:
        self._conn.close()


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
        blob = base64.b64decode(data["c"])
        plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], subject_id.bytes)
        return PersonalData(subject_id, plain.decode())


class SealingMapper(Mapper[UUID]):
    """eventsourcing's mapper with per-subject sealing; upcasting (``class_version``) is unchanged."""

    def __init__(self, transcoder: Transcoder, keys: KeyStore, **kwargs: Any) -> None:
        if not isinstance(transcoder, JSONTranscoder):
            raise TypeError("sealing needs the JSON transcoder")
        transcoder.register(PersonalDataTranscoding(keys))
        super().__init__(transcoder, **kwargs)
        self.keys = keys
