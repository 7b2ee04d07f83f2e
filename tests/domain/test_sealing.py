"""Personal data is sealed per subject: never in clear at rest, erasable by destroying one key."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from cryptography.exceptions import InvalidTag
from eventsourcing.domain import Aggregate, event
from hypothesis import given, settings
from hypothesis import strategies as st

from api.services import Services, build_services
from domain.adapters.key_stores import SQLiteKeyStore
from domain.sealing import ERASED, PersonalData, PersonalDataTranscoding
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

    import base64

    blob = bytearray(base64.b64decode(sealed["c"]))
    blob[flip % len(blob)] ^= 0x01
    with pytest.raises(InvalidTag):
        transcoding.decode({"s": sealed["s"], "c": base64.b64encode(bytes(blob)).decode()})
    other = uuid4()  # a ciphertext moved to another subject does not open either
    keys.key_for(other, create=True)
    with pytest.raises(InvalidTag):
        transcoding.decode({"s": other.hex, "c": sealed["c"]})


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
