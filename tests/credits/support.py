"""An application on the in-memory event store, for property tests that need a fresh one per example."""

from __future__ import annotations

import uuid
from pathlib import Path

from domain.adapters.credentials import bcrypt_hash
from domain.adapters.key_stores import SQLiteKeyStore
from domain.application import OwnLLM
from tests.support.clock import ManualClock


def popo_app(tmp: Path, clock: ManualClock) -> OwnLLM:
    """OwnLLM on eventsourcing's in-memory recorder, its subject keys in a throwaway SQLite file."""
    keys = SQLiteKeyStore(str(tmp / f"keys-{uuid.uuid4().hex}.sqlite"))
    return OwnLLM({"PERSISTENCE_MODULE": "eventsourcing.popo"}, keys=keys, pepper=b"p" * 32,
                  hash_credential=bcrypt_hash, clock=clock)  # fmt: skip
