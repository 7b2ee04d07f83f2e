"""Erasure that really erases: a person with canary name, e-mail and key label uses the product, asks for
deletion, the clock moves 30 days, the sweeper runs, and the canaries are found in no store."""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.cli_audit import catch_up_ledger, verify_database
from api.ledger_keys import public_keys
from api.services import Services, build_services
from api.settings import Settings, load_settings
from api.sweep_tasks import build_sweeper
from api.sweeper import Sweeper
from domain.sealing import ERASED, PersonalData
from tests.platform.test_serve_demo import OWNLLM, REPO, free_port
from tests.support.api_client import Api
from tests.support.clock import ManualClock
from tests.support.stores import holds, store_bytes

CANARY_NAME = "Zebulon Canarywood"
CANARY_EMAIL = "zebulon.canary-4d1f@leak.example"
CANARY_KEY = "canary-laptop-key-9b2e"
CANARIES = (CANARY_NAME, CANARY_EMAIL, CANARY_KEY)


def _member(api: Api, admin_key: str) -> tuple[UUID, str]:
    invite = api.call("POST", "/api/v1/invites", admin_key, json={"email": CANARY_EMAIL, "role": "member"})
    assert invite.status_code == 201, invite.text
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": invite.json()["token"], "name": CANARY_NAME})
    assert joined.status_code == 201, joined.text
    return UUID(joined.json()["user_id"]), joined.json()["api_key"]["secret"]


def _uses_the_product(api: Api, admin_key: str, user_id: UUID, member_key: str) -> str:
    """Keys, usage, audit reads and an export of their own; returns the canary-labelled key's secret."""
    issued = api.call("POST", "/api/v1/keys", member_key, json={"name": CANARY_KEY, "scopes": ["inference"]})
    assert issued.status_code == 201, issued.text
    tenant_id = api.services.directory.users[user_id].tenant_id
    api.services.app.record_usage(
        tenant_id=tenant_id, user_id=user_id, key_id=UUID(issued.json()["id"]), agent_id=None, model="m",
        endpoint="chat", stream=False, status="ok", prompt_tokens=7, completion_tokens=3, ttft_ms=1,
        duration_ms=5, request_id=str(uuid.uuid4()),
    )  # fmt: skip
    assert api.call("GET", "/api/v1/audit", admin_key).status_code == 200
    export = api.call("POST", "/api/v1/me/export", member_key)
    assert export.status_code == 202, export.text
    sweeper(api).run_once()
    download = api.call("GET", f"/api/v1/exports/{export.json()['id']}/download", member_key)
    assert download.status_code == 200, download.text
    assert any(holds(raw, CANARY_EMAIL) for raw in _zip_files(download.content))  # the export holds the person
    return str(issued.json()["secret"])


def sweeper(api: Api) -> Sweeper:
    """This process's sweeper (one per process: it holds the sweeping lock)."""
    if api.services.sweeper is None:
        api.services.sweeper = build_sweeper(api.services)
    return api.services.sweeper  # type: ignore[no-any-return]


def _zip_files(content: bytes) -> list[bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        return [zf.read(name) for name in zf.namelist()]


def _key_store_bytes(settings: Settings) -> bytes:
    """The key store as stored: the SQLite file with its -wal and -shm, or the key table's rows."""
    if settings.persistence == "sqlite":
        return b"".join(p.read_bytes() for p in Path(settings.var_dir).glob("subject-keys.sqlite*"))
    return store_bytes(settings)  # every table of the schema, the key table included


def _pg_dump(settings: Settings) -> bytes:
    """A real pg_dump of the schema (keys and events), where the client is installed."""
    binary = shutil.which("pg_dump") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None)
    if binary is None:
        return store_bytes(settings)
    dumped = subprocess.run([str(binary), "--schema", settings.postgres_schema, "--data-only", settings.postgres_dsn],
                            check=True, capture_output=True)  # fmt: skip
    return dumped.stdout


def _wait_for(check: Any, timeout_s: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            break
        time.sleep(0.01)
    return time.monotonic() - start


def test_an_erased_person_is_found_in_no_store_and_every_process_shows_erased(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = api.services.settings
    admin_key = api.signup("erasure-e2e")["api_key"]["secret"]
    admin_id = next(iter(api.services.directory.users))
    user_id, member_key = _member(api, admin_key)
    canary_key_secret = _uses_the_product(api, admin_key, user_id, member_key)
    second: Services = build_services(settings, clock=api.clock)  # a second API process on the same stores
    try:
        assert second.directory.users[user_id].name == CANARY_NAME  # it unsealed (and cached) the key
        subject_key = api.services.keys.key_for(user_id, create=False)
        admin_subject_key = api.services.keys.key_for(admin_id, create=False)
        assert subject_key is not None and admin_subject_key is not None
        assert api.services.ledger is not None
        catch_up_ledger(api.services)
        api.services.ledger.checkpoint()
        before_erasure = datetime.now(UTC)

        asked = api.call("POST", "/api/v1/me/deletion", member_key)
        assert asked.status_code == 202, asked.text
        assert sum(sweeper(api).run_once().values()) == 0  # restorable: nothing happens yet
        api.clock.advance(days=30)
        assert sweeper(api).run_once()["deletions-due"] >= 3  # keys revoked, user removed, SubjectErased
        assert sum(sweeper(api).run_once().values()) == 0  # at the same instant: nothing twice

        # the second process shows <erased> within a second, and forgot the key it had cached
        waited = _wait_for(lambda: second.directory.users[user_id].name == ERASED, timeout_s=1.0)
        assert second.directory.users[user_id].email == ERASED, f"still not erased after {waited:.2f} s"
        assert second.keys.key_for(user_id, create=False) is None
        tenant_id = second.directory.users[user_id].tenant_id
        assert {k.name for k in second.directory.tenant_keys(tenant_id, user_id)} == {ERASED}

        # canaries in no store: events (and every read model table in them), keys (with -wal), exports, dump
        raw = store_bytes(settings)
        assert len(raw) > 1000 and holds(raw, "erasure-e2e")  # the dump was read and finds clear text
        assert not any(holds(raw, canary) for canary in CANARIES)
        keys = _key_store_bytes(settings)
        assert holds(keys, admin_subject_key.hex()) or admin_subject_key in keys  # the search finds keys ...
        assert subject_key not in keys and not holds(keys, subject_key.hex())  # ... and not the erased one
        assert list(Path(settings.exports_path).glob("*")) == []
        if settings.persistence == "postgres":
            dump = _pg_dump(settings)
            assert holds(dump, "erasure-e2e")
            assert not any(holds(dump, canary) for canary in (*CANARIES, subject_key.hex()))

        # every event still decodes; each of the person's values reads <erased>
        for notification in api.services.app.recorder.select_notifications(1, 10_000):
            event = api.services.app.mapper.to_domain_event(notification)
            for value in vars(event).values():
                if isinstance(value, PersonalData) and value.subject_id == user_id:
                    assert value.value == ERASED

        # the keys stop working, the directory here shows <erased>, the trail still verifies
        for secret in (member_key, canary_key_secret):
            assert api.call("GET", "/api/v1/keys", secret).status_code == 401
        listed = api.call("GET", f"/api/v1/users/{user_id}", admin_key).json()
        assert (listed["name"], listed["email"], listed["status"]) == (ERASED, ERASED, "erased")
        catch_up_ledger(api.services)
        api.services.ledger.checkpoint()
        signer = api.services.ledger.signer
        assert signer is not None
        lines, ok = verify_database(api.services, public_keys(signer, settings), api.services.ledger.origin)
        assert ok, lines

        # a replay as of before the erasure shows the placeholders, not the person
        replayed = api.call("GET", "/api/v1/audit/replay", admin_key, params={"as_of": before_erasure.isoformat()})
        assert replayed.status_code == 200, replayed.text
        assert CANARY_NAME not in replayed.text and ERASED in replayed.text
        assert caplog.records and not any(canary in caplog.text for canary in CANARIES)  # nor in any log line
    finally:
        second.close()


def test_restoring_inside_the_window_brings_everything_back_unchanged(api: Api) -> None:
    admin_key = api.signup("restore")["api_key"]["secret"]
    user_id, member_key = _member(api, admin_key)
    before = api.call("GET", f"/api/v1/users/{user_id}", admin_key).json()
    keys_before = api.call("GET", "/api/v1/keys", member_key).json()
    asked = api.call("POST", "/api/v1/me/deletion", member_key)
    assert asked.status_code == 202
    assert api.call("POST", "/api/v1/me/deletion", member_key).status_code == 409  # one pending at a time
    api.clock.advance(days=30, seconds=-1)
    assert sum(sweeper(api).run_once().values()) == 0  # a second before the due instant: nothing
    restored = api.call("DELETE", "/api/v1/me/deletion", member_key)
    assert restored.status_code == 200 and restored.json()["status"] == "cancelled", restored.text
    api.clock.advance(days=60)
    assert sum(sweeper(api).run_once().values()) == 0

    assert api.call("GET", f"/api/v1/users/{user_id}", admin_key).json() == before
    assert api.call("GET", "/api/v1/keys", member_key).json() == keys_before
    assert api.call("GET", "/api/v1/me/deletion", member_key).status_code == 404


def test_the_deletion_cannot_be_restored_once_due_and_the_admin_cannot_cancel_a_persons_own_request(api: Api) -> None:
    admin_key = api.signup("no-restore")["api_key"]["secret"]
    user_id, member_key = _member(api, admin_key)
    assert api.call("POST", "/api/v1/me/deletion", member_key).status_code == 202
    assert api.call("DELETE", f"/api/v1/users/{user_id}/deletion", admin_key).status_code == 403
    api.clock.advance(days=30)
    late = api.call("DELETE", "/api/v1/me/deletion", member_key)
    assert late.status_code == 409 and "no longer be restored" in late.text


def test_the_last_admin_cannot_ask_for_deletion_but_an_admin_can_delete_a_member(api: Api) -> None:
    admin_key = api.signup("last-admin")["api_key"]["secret"]
    user_id, _ = _member(api, admin_key)
    refused = api.call("POST", "/api/v1/me/deletion", admin_key)
    assert refused.status_code == 409 and "admin" in refused.text
    asked = api.call("POST", f"/api/v1/users/{user_id}/deletion", admin_key)
    assert asked.status_code == 202 and asked.json()["cause"] == "admin"
    assert api.call("GET", f"/api/v1/users/{user_id}/deletion", admin_key).json()["status"] == "pending"
    cancelled = api.call("DELETE", f"/api/v1/users/{user_id}/deletion", admin_key)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_another_api_process_shows_erased_within_a_second(tmp_path: Path, clock: ManualClock) -> None:
    """A real second `ownllm serve` on the same SQLite store: its directory follows the erasure event."""
    settings = load_settings({}, var_dir=str(tmp_path / "var"), inference=False, nats_public_url="tls://n:4222")
    services = build_services(settings, clock=clock)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OWNLLM_VAR_DIR": str(tmp_path / "var"), "OWNLLM_PORT": str(port),
           "OWNLLM_INFERENCE": "false", "OWNLLM_RUN_PROJECTIONS": "false", "OWNLLM_SWEEP_INTERVAL_S": "0",
           "OWNLLM_NATS_PUBLIC_URL": "tls://n:4222"}  # fmt: skip
    server = subprocess.Popen([OWNLLM, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    try:
        app = create_app(settings, services)
        with TestClient(app) as client:
            api = Api(client, services, clock)
            admin_key = api.signup("two-processes")["api_key"]["secret"]
            user_id, member_key = _member(api, admin_key)
            base = f"http://127.0.0.1:{port}/api/v1/users/{user_id}"

            def seen_there() -> str:
                try:
                    return str(
                        httpx.get(base, headers={"Authorization": f"Bearer {admin_key}"}, timeout=2).json()["name"]
                    )
                except (httpx.HTTPError, ValueError, KeyError):
                    return ""

            _wait_for(lambda: seen_there() == CANARY_NAME, timeout_s=60)
            assert seen_there() == CANARY_NAME  # the other process unsealed the name (and cached the key)
            assert api.call("POST", "/api/v1/me/deletion", member_key).status_code == 202
            clock.advance(days=30)
            assert sweeper(api).run_once()["deletions-due"] > 0
            waited = _wait_for(lambda: seen_there() == ERASED, timeout_s=1.0)
            assert seen_there() == ERASED, f"the other process still shows the person after {waited:.2f} s"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        services.close()
