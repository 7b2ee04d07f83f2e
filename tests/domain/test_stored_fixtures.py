"""Stores written by earlier code load, replay and take new commands with the code of today.

``tests/fixtures/store-v1`` was recorded once by ``tests/fixtures/record_store_v1.py`` with the code
of the commit named in its ``expected.json`` (``recorded_with``): a SQLite event store and subject-key
store as that code left them, the same rows as JSONL for PostgreSQL, and what a reader must see.
Never re-record the fixture to make this test pass: a store that no longer loads needs an upcaster
(event classes keep their topics, e.g. ``domain.user:User.Joined``) or a migration.

Each test runs on both stores (the ``persistence`` fixture, as every store test does; PostgreSQL is
never skipped): SQLite from copies of the fixture files, PostgreSQL from a fresh schema whose tables
the current code creates, filled with the recorded rows by raw SQL. Only stable entry points are
used: settings, ``build_services``, ``Services.command``, the directory, the usage view, the
authenticator, ``app.repository`` and ``app.recorder``.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from api.services import Services, build_services
from api.settings import Settings
from domain.context import Ctx
from tests.fixtures import record_store_v1 as recording

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())
ERASED = "<erased>"  # what an erased subject's personal data reads as (literal: the stored contract)
# Where existing deployments keep their data: these names are part of what must keep loading.
SQLITE_EVENTS_FILE = "events.sqlite"  # {var_dir}/events.sqlite, the embedded default
SQLITE_KEYS_FILE = "subject-keys.sqlite"  # {var_dir}/subject-keys.sqlite
PG_EVENTS_TABLE = "ownllm_events"  # eventsourcing's "<application name>_events"
PG_KEYS_TABLE = "ownllm_subject_keys"


def read_jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURE / name).read_text().splitlines() if line]


STORED_EVENTS = read_jsonl("stored_events.jsonl")
SUBJECT_KEYS = read_jsonl("subject_keys.jsonl")
TENANTS = {t["slug"]: UUID(t["id"]) for t in EXPECTED["directory"]["tenants"]}
SECRETS = EXPECTED["secrets"]


# -- loading the old store ------------------------------------------------------------------------


def load_postgres(settings: Settings) -> None:
    """Insert the recorded rows into the tables the current code created, as a migration tool would."""
    schema = Identifier(settings.postgres_schema)
    events, keys = Identifier(PG_EVENTS_TABLE), Identifier(PG_KEYS_TABLE)
    with psycopg.connect(settings.postgres_dsn) as conn, conn.cursor() as cur:
        for table in (events, keys):
            cur.execute(SQL("SELECT count(*) FROM {}.{}").format(schema, table))
            assert cur.fetchone() == (0,), "the new store is not empty"
        cur.executemany(
            SQL(
                "INSERT INTO {}.{} (notification_id, originator_id, originator_version, topic, state) "
                "OVERRIDING SYSTEM VALUE VALUES (%s, %s, %s, %s, %s)"
            ).format(schema, events),
            [
                (r["notification_id"], UUID(r["originator_id"]), r["originator_version"], r["topic"],
                 base64.b64decode(r["state"]))
                for r in STORED_EVENTS
            ],
        )  # fmt: skip
        # The next event must get the next notification id (what pg_restore does for a serial column).
        qualified = SQL("{}.{}").format(schema, events).as_string(conn)
        cur.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)",
            (qualified, EXPECTED["max_notification_id"]),
        )
        cur.executemany(
            SQL("INSERT INTO {}.{} (subject_id, key, destroyed) VALUES (%s, %s, %s)").format(schema, keys),
            [
                (UUID(k["subject_id"]), None if k["key"] is None else base64.b64decode(k["key"]), k["destroyed"])
                for k in SUBJECT_KEYS
            ],
        )


@pytest.fixture
def old_settings(persistence: str, make_settings: Callable[..., Settings]) -> Settings:
    """Settings of a private store holding the recorded history (the fixture files stay untouched)."""
    settings = make_settings(key_pepper=(FIXTURE / EXPECTED["pepper_file"]).read_text().strip())
    if persistence == "sqlite":
        var = Path(settings.var_dir)
        var.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURE / SQLITE_EVENTS_FILE, settings.sqlite_file)
        shutil.copyfile(FIXTURE / SQLITE_KEYS_FILE, var / SQLITE_KEYS_FILE)
    else:
        build_services(settings, start_runner=False).close()  # the current code creates its tables
        load_postgres(settings)
    return settings


@pytest.fixture
def old_store(old_settings: Settings) -> Iterator[Services]:
    services = build_services(old_settings, start_runner=False)
    try:
        yield services
    finally:
        services.close()


# -- what a reader sees (the same shapes as the recording script's) --------------------------------


def directory_snapshot(services: Services) -> dict[str, Any]:
    """The directory as the API lists it, per recorded tenant, read the way the recording read it."""
    return recording.directory_snapshot(services, list(TENANTS.values()))


def usage_totals(services: Services) -> dict[str, Any]:
    """Usage per tenant slug and model, read the way the recording read it."""
    return recording.usage_totals(services, TENANTS)


def stored_rows(services: Services, start: int, limit: int = 10_000) -> list[dict[str, Any]]:
    """Stored events from a notification id on, as the JSONL shows them (ids normalised to UUIDs)."""
    return [
        {"notification_id": n.id, "originator_id": str(UUID(str(n.originator_id))),
         "originator_version": n.originator_version, "topic": n.topic, "state": base64.b64encode(n.state).decode()}
        for n in services.app.recorder.select_notifications(start, limit)
    ]  # fmt: skip


def rejection_code(services: Services, secret: str) -> str | None:
    """None when the secret authenticates, else the refusal's code."""
    try:
        services.authenticator.authenticate(secret)
    except Exception as exc:
        return str(getattr(exc, "code", type(exc).__name__))
    return None


# -- the tests ------------------------------------------------------------------------------------


def test_the_old_store_reads_exactly_as_recorded(old_store: Services) -> None:
    assert directory_snapshot(old_store) == EXPECTED["directory"]
    assert usage_totals(old_store) == EXPECTED["usage"]
    for subject in EXPECTED["erased_subjects"]:
        user = old_store.directory.users[UUID(subject)]
        assert (user.name, user.email) == (ERASED, ERASED)

    rows = stored_rows(old_store, 1)
    assert len(rows) == EXPECTED["events"]
    assert rows[-1]["notification_id"] == EXPECTED["max_notification_id"]
    recorded = [r | {"originator_id": str(UUID(r["originator_id"]))} for r in STORED_EVENTS]
    assert rows == recorded  # not one stored byte was rewritten on the way in
    assert sorted({r["topic"] for r in rows}) == EXPECTED["event_topics"]


def test_every_aggregate_replays_to_its_recorded_state(old_store: Services) -> None:
    """Each recorded attribute must replay equal; attributes added later by new code are allowed."""
    mismatches = []
    for aggregate_id, recorded in EXPECTED["aggregates"].items():
        aggregate = old_store.app.repository.get(UUID(aggregate_id))
        replayed = {
            "type": get_topic(type(aggregate)),
            "version": aggregate.version,
            "created_on": recording.jsonable(aggregate.created_on),
            "modified_on": recording.jsonable(aggregate.modified_on),
            "state": {name: recording.jsonable(getattr(aggregate, name, "<missing>")) for name in recorded["state"]},
        }
        if replayed != recorded:
            mismatches.append((aggregate_id, recorded, replayed))
    assert not mismatches
    assert len(EXPECTED["aggregates"]) == len({r["originator_id"] for r in STORED_EVENTS})


def test_recorded_secrets_authenticate_or_are_refused_for_the_recorded_reason(old_store: Services) -> None:
    for name in ("valid_api_key", "valid_member_api_key"):
        recorded = SECRETS[name]
        principal = old_store.authenticator.authenticate(recorded["secret"])  # through the keyed hash
        assert str(principal.key_id) == recorded["key_id"]
        assert (str(principal.tenant_id), str(principal.user_id)) == (recorded["tenant_id"], recorded["user_id"])
        assert (principal.role, sorted(principal.scopes)) == (recorded["role"], recorded["scopes"])
    for refused in SECRETS["refused_api_keys"]:
        assert rejection_code(old_store, refused["secret"]) == refused["code"]


def test_new_commands_append_after_the_old_history(old_store: Services, old_settings: Settings) -> None:
    app, command = old_store.app, old_store.command
    acme, globex = TENANTS["acme"], TENANTS["globex"]
    ada = UUID(SECRETS["valid_api_key"]["user_id"])
    ada_key = UUID(SECRETS["valid_api_key"]["key_id"])
    n = iter(range(1, 100))

    def as_ada() -> Ctx:
        return Ctx(actor=f"user:{ada}", tenant_id=acme, request_id=f"after-v1-{next(n)}")

    member_key = SECRETS["valid_member_api_key"]
    command(app.revoke_api_key, as_ada(), UUID(member_key["key_id"]), "rotated after the restructuring")
    assert rejection_code(old_store, member_key["secret"]) == "key_revoked"

    ivan = command(app.invite_user, as_ada(), email="ivan@acme.example", role="member")
    assert old_store.directory.invites[ivan.id].status == "open"

    invite = SECRETS["open_invite"]  # the old token still finds its invite (id derived from the keyed hash)
    frank = command(app.accept_invite, token=invite["token"], name="Frank Castle", request_id=f"after-v1-{next(n)}")
    assert (str(frank.tenant_id), frank.role) == (invite["tenant_id"], invite["role"])
    assert old_store.directory.invites[UUID(invite["invite_id"])].status == "accepted"
    frank_user = old_store.directory.users[frank.user_id]
    assert (frank_user.name, frank_user.email, frank_user.status) == ("Frank Castle", invite["email"], "active")
    assert rejection_code(old_store, frank.api_key.secret) is None

    pairing = SECRETS["open_pairing_key"]
    agent = command(
        app.redeem_pairing_key, secret=pairing["secret"], name="gpu-box-2", request_id=f"after-v1-{next(n)}"
    )
    assert old_store.directory.pairing_keys[UUID(pairing["pairing_key_id"])].status == "redeemed"
    assert old_store.directory.agents[agent.agent_id].revoked_at is None

    model = next(iter(EXPECTED["usage"]["acme"]))
    command(
        app.record_usage, tenant_id=acme, user_id=ada, key_id=ada_key, agent_id=agent.agent_id, model=model,
        endpoint="/v1/chat/completions", stream=False, status="ok", prompt_tokens=7, completion_tokens=5,
        ttft_ms=3, duration_ms=11, request_id=f"after-v1-{next(n)}",
    )  # fmt: skip
    totals = usage_totals(old_store)
    before = EXPECTED["usage"]["acme"][model]
    assert totals["acme"][model] == before | {
        "requests": before["requests"] + 1, "prompt_tokens": before["prompt_tokens"] + 7,
        "completion_tokens": before["completion_tokens"] + 5, "duration_ms": before["duration_ms"] + 11,
        "by_status": before["by_status"] | {"ok": before["by_status"].get("ok", 0) + 1},
    }  # fmt: skip
    assert totals["globex"] == EXPECTED["usage"]["globex"]

    hana_key = next(k for k in SECRETS["refused_api_keys"] if k["code"] == "tenant_suspended")
    command(app.reinstate_tenant, Ctx("system", globex, f"after-v1-{next(n)}"), "cleared after the restructuring")
    assert rejection_code(old_store, hana_key["secret"]) is None

    old_max = EXPECTED["max_notification_id"]
    assert stored_rows(old_store, 1, old_max) == [
        r | {"originator_id": str(UUID(r["originator_id"]))} for r in STORED_EVENTS
    ]  # fmt: skip
    new = stored_rows(old_store, old_max + 1)
    assert [r["notification_id"] for r in new] == list(range(old_max + 1, old_max + 1 + len(new)))
    assert len(new) >= 9  # revoke 1, invite 1, accept 3, pair 2, usage 1, reinstate 1 (today)

    live = directory_snapshot(old_store)
    replayed = build_services(old_settings, start_runner=False)  # a restart reads old and new alike
    try:
        assert directory_snapshot(replayed) == live
        assert usage_totals(replayed) == totals
    finally:
        replayed.close()


def test_an_old_clear_tenant_name_still_loads_and_reads_erased_after_the_tenant_is_erased(
    old_store: Services, old_settings: Settings
) -> None:
    """Before the name was sealed, ``Tenant.Registered`` held it as a plain string: it loads as one, the
    aggregate and the directory read it, and after the terminated tenant's erasure every reader shows
    ``<erased>`` (the old stored bytes keep it: events are never rewritten)."""
    from api.sweep_tasks import build_sweeper
    from domain.tenant import Tenant

    acme = TENANTS["acme"]
    name = next(t["name"] for t in EXPECTED["directory"]["tenants"] if t["slug"] == "acme")
    registered = next(n for n in old_store.app.recorder.select_events(acme) if n.originator_version == 1)
    event = old_store.app.mapper.to_domain_event(registered)
    assert isinstance(event, Tenant.Registered) and type(event.name) is str and event.name == name  # old shape
    tenant = old_store.app.repository.get(acme)
    assert (tenant.name, tenant.display_name) == (name, name)
    assert old_store.directory.tenants[acme].name == name

    erase_by = old_store.command(old_store.app.terminate_tenant, Ctx("system", acme, "after-v1-end"), "ended")
    old_store.sweeper = build_sweeper(old_store)
    assert old_store.sweeper.run_once(erase_by)["deletions-due"] > 0
    assert old_store.directory.tenants[acme].name == ERASED
    restarted = build_services(old_settings, start_runner=False)  # a replay from the first event
    try:
        assert restarted.directory.tenants[acme].name == ERASED
        assert restarted.directory.tenants[TENANTS["globex"]].name != ERASED  # the other tenant keeps its name
    finally:
        restarted.close()
