"""Personal data is sealed per subject: never in clear at rest, erasable by destroying one key."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import Aggregate, event
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from api.app import create_app
from api.services import Services, build_services
from domain.adapters.key_stores import SQLiteKeyStore
from domain.sealing import ERASED, NONCE_BYTES, UNREADABLE, PersonalData, PersonalDataTranscoding
from tests.support.api_client import Api
from tests.support.stores import holds, store_bytes

CANARY = "canary-7f3a9c@leak.example"


def test_a_canary_email_never_reaches_the_event_store_in_clear(api: Api) -> None:
    admin_key = api.signup("canaries")["api_key"]["secret"]
    response = api.call("POST", "/api/v1/invites", admin_key, json={"email": CANARY, "role": "member"})
    assert response.status_code == 201
    token = response.json()["token"]
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Canary Person"})
    assert joined.status_code == 201
    user_id = joined.json()["user_id"]
    reason = {"reason": f"complaint from {CANARY}"}  # free text may name people: sealed too
    assert api.call("POST", f"/api/v1/users/{user_id}/suspend", admin_key, json=reason).status_code == 201

    raw = store_bytes(api.services.settings)
    assert len(raw) > 1000  # the store really was read
    assert not holds(raw, CANARY)
    assert not holds(raw, "Canary Person")
    assert holds(raw, "canaries")  # the slug is not personal data: proves the search finds clear text


def test_erasing_a_subject_keeps_replay_working_and_shows_the_placeholder(api: Api) -> None:
    admin_key = api.signup("erasure")["api_key"]["secret"]
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": CANARY}).json()["token"]
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Eve"}).json()
    subject = UUID(joined["user_id"])

    api.services.keys.destroy(subject)

    replayed: Services = build_services(api.services.settings, start_runner=False)
    try:
        user = replayed.directory.users[subject]
        assert (user.name, user.email) == (ERASED, ERASED)
        others = [u for u in replayed.directory.users.values() if u.id != subject]
        assert [u.email for u in others] == ["admin@example.com"]
        assert replayed.directory.invites[next(iter(replayed.directory.invites))].email == ERASED
        events = replayed.app.recorder.select_notifications(1, 1000)
        assert len(events) == replayed.runner.position  # every event still decodes
    finally:
        replayed.close()


def test_an_erased_subject_cannot_be_sealed_again(tmp_path: Path) -> None:
    keys = SQLiteKeyStore(str(tmp_path / "keys.sqlite"))
    transcoding = PersonalDataTranscoding(keys)
    subject = uuid4()
    sealed = transcoding.encode(PersonalData(subject, "x"))
    keys.destroy(subject)
    assert transcoding.decode(sealed) == PersonalData(subject, ERASED)
    fresh = SQLiteKeyStore(str(tmp_path / "keys.sqlite"))  # another process sees the erasure too
    assert fresh.key_for(subject, create=True) is None


@settings(max_examples=60, deadline=None)
@given(value=st.text(max_size=300), flip=st.integers(min_value=0, max_value=10_000))
def test_sealing_round_trips_and_detects_tampering(
    tmp_path_factory: pytest.TempPathFactory, value: str, flip: int
) -> None:
    keys = SQLiteKeyStore(str(tmp_path_factory.mktemp("k") / "keys.sqlite"))
    transcoding = PersonalDataTranscoding(keys)
    subject = uuid4()
    sealed = transcoding.encode(PersonalData(subject, value))
    assert value not in sealed["c"] or len(value) < 4
    assert transcoding.decode(sealed) == PersonalData(subject, value)

    blob = bytearray(base64.b64decode(sealed["c"]))
    blob[flip % len(blob)] ^= 0x01
    altered = {"s": sealed["s"], "c": base64.b64encode(bytes(blob)).decode()}
    assert transcoding.decode(altered) == PersonalData(subject, UNREADABLE)
    other = uuid4()  # a ciphertext moved to another subject does not open either
    keys.key_for(other, create=True)
    assert transcoding.decode({"s": other.hex, "c": sealed["c"]}) == PersonalData(other, UNREADABLE)


def test_the_same_value_sealed_twice_differs(tmp_path: Path) -> None:
    """A fresh random nonce per seal: equal values do not show as equal blobs (nor reuse a GCM nonce)."""
    transcoding = PersonalDataTranscoding(SQLiteKeyStore(str(tmp_path / "keys.sqlite")))
    subject = uuid4()
    blobs = [transcoding.encode(PersonalData(subject, "same@example.com"))["c"] for _ in range(3)]
    assert len(set(blobs)) == 3
    nonces = {base64.b64decode(b)[:NONCE_BYTES] for b in blobs}
    assert len(nonces) == 3 and bytes(NONCE_BYTES) not in nonces
    assert {transcoding.decode({"s": subject.hex, "c": b}).value for b in blobs} == {"same@example.com"}


def test_a_blob_moved_to_another_subject_does_not_open_even_under_the_same_key(tmp_path: Path) -> None:
    """The subject id is the AES-GCM associated data: the key alone does not open another subject's blob.

    Two subjects holding the same key (a key row copied by mistake, a restore gone wrong) is the one
    case where only the associated data stops a moved blob from decrypting as the other person's.
    """
    keys = SQLiteKeyStore(str(tmp_path / "keys.sqlite"))
    transcoding = PersonalDataTranscoding(keys)
    owner, other = uuid4(), uuid4()
    sealed = transcoding.encode(PersonalData(owner, "owner@example.com"))
    shared = keys.key_for(owner, create=False)
    assert shared is not None
    assert keys._insert(other, shared) == shared  # the real store, holding one key under two subjects

    assert transcoding.decode({"s": other.hex, "c": sealed["c"]}) == PersonalData(other, UNREADABLE)
    blob = base64.b64decode(sealed["c"])
    assert AESGCM(shared).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], owner.bytes) == b"owner@example.com"


def _rewrite_state(services: Services, topic: str, change: Any) -> None:
    """Rewrite the stored state of every event of ``topic`` with ``change(index, state)`` (tampering)."""
    recorder = services.app.recorder
    table = recorder.events_table_name  # type: ignore[attr-defined]
    settings = services.settings
    if settings.persistence == "sqlite":
        conn = sqlite3.connect(settings.sqlite_file)
        rows = conn.execute(f"SELECT rowid, state FROM {table} WHERE topic = ? ORDER BY rowid", (topic,)).fetchall()
        for index, (rowid, state) in enumerate(rows):
            new = json.dumps(change(index, json.loads(state))).encode()
            conn.execute(f"UPDATE {table} SET state = ? WHERE rowid = ?", (new, rowid))
        conn.commit()
        conn.close()
        return
    with psycopg.connect(settings.postgres_dsn) as pg:
        name = f'"{settings.postgres_schema}"."{table}"'
        rows = pg.execute(
            f"SELECT notification_id, state FROM {name} WHERE topic = %s ORDER BY notification_id", (topic,)
        ).fetchall()
        for index, (rowid, state) in enumerate(rows):
            new = json.dumps(change(index, json.loads(bytes(state)))).encode()
            pg.execute(f"UPDATE {name} SET state = %s WHERE notification_id = %s", (new, rowid))


def test_a_blob_moved_into_another_subjects_event_reads_unreadable_and_replay_goes_on(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    admin_key = api.signup("moved")["api_key"]["secret"]
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": CANARY}).json()["token"]
    eve = UUID(api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Eve"}).json()["user_id"])
    moved: dict[str, Any] = {}

    def move_admins_name_into_eves(index: int, state: dict[str, Any]) -> dict[str, Any]:
        if index == 0:
            moved["c"] = state["name"]["_data_"]["c"]
        else:
            state["name"]["_data_"]["c"] = moved["c"]
        return state

    _rewrite_state(api.services, "domain.user:User.Joined", move_admins_name_into_eves)

    with caplog.at_level(logging.ERROR, logger="domain.sealing"):
        replayed: Services = build_services(api.services.settings, start_runner=False)
    try:
        user = replayed.directory.users[eve]
        assert (user.name, user.email) == (UNREADABLE, CANARY)  # not "Admin", and the rest still reads
        assert [u.name for u in replayed.directory.users.values() if u.id != eve] == ["Admin"]
        assert any(str(eve) in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
        app = create_app(replayed.settings, replayed)
        with TestClient(app) as client:  # the service still answers, and the admin still authenticates
            me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {admin_key}"})
            assert me.status_code == 200, me.text
    finally:
        replayed.close()


class Note(Aggregate):
    """A test aggregate whose event gains a field in version 2."""

    class Written(Aggregate.Created):
        author: PersonalData

    @event(Written)
    def __init__(self, author: PersonalData) -> None:
        self.author = author


def test_upcasting_still_works_through_the_sealing_mapper(services: Services) -> None:
    subject = uuid4()
    note = Note(author=PersonalData(subject, "Ann"))
    services.app.save(note)
    Note.Written.class_version = 2  # type: ignore[attr-defined]
    Note.Written.upcast_v1_v2 = staticmethod(lambda state: state.update(language="en"))  # type: ignore[attr-defined]
    try:
        stored = services.app.recorder.select_notifications(1, 10)
        written = services.app.mapper.to_domain_event(stored[-1])
        assert written.author == PersonalData(subject, "Ann")  # type: ignore[attr-defined]
        assert written.language == "en"  # type: ignore[attr-defined]
    finally:
        del Note.Written.class_version  # type: ignore[attr-defined]
        del Note.Written.upcast_v1_v2  # type: ignore[attr-defined]


def test_the_key_store_is_a_separate_file_from_the_events(services: Services) -> None:
    if services.settings.persistence != "sqlite":
        assert services.keys.__class__.__name__ == "PostgresKeyStore"
        return
    events = sqlite3.connect(services.settings.sqlite_file)
    tables = {row[0] for row in events.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "subject_keys" not in tables


def test_an_erased_persons_keys_can_still_be_revoked_and_the_person_removed(api: Api) -> None:
    admin_key = api.signup("aftercare")["api_key"]["secret"]
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": CANARY}).json()["token"]
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Eve"}).json()
    subject, their_key = UUID(joined["user_id"]), joined["api_key"]
    api.services.keys.destroy(subject)

    revoked = api.call("DELETE", f"/api/v1/keys/{their_key['id']}?reason=erased%20on%20request", admin_key)
    assert revoked.status_code == 204, revoked.text
    assert api.call("GET", "/api/v1/me", their_key["secret"]).status_code == 401
    removed = api.call("DELETE", f"/api/v1/users/{subject}?reason=complaint%20from%20{CANARY}", admin_key)
    assert removed.status_code == 204, removed.text

    assert not holds(store_bytes(api.services.settings), CANARY)
    replayed: Services = build_services(api.services.settings, start_runner=False)
    try:
        assert replayed.directory.users[subject].status == "removed"
    finally:
        replayed.close()


def test_an_agents_device_name_is_sealed_like_other_free_text(api: Api) -> None:
    admin_key = api.signup("devices")["api_key"]["secret"]
    secret = api.call("POST", "/api/v1/pairing-keys", admin_key).json()["secret"]
    paired = api.call("POST", "/api/v1/agents/pair", json={"pairing_key": secret, "name": "canary-alice-desktop"})
    assert paired.status_code == 201, paired.text
    assert [a["name"] for a in api.call("GET", "/api/v1/agents", admin_key).json()] == ["canary-alice-desktop"]
    assert not holds(store_bytes(api.services.settings), "canary-alice-desktop")
