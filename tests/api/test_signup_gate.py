"""Public signup against a hostile world: modes, rate limits per address, the tenant cap, taken slugs."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from api.services import build_services
from api.settings import Settings, SettingsError, load_settings
from tests.support.api_client import Api
from tests.support.clock import ManualClock
from tests.support.server import ServerThread
from tests.support.terms import TERMS

TOKEN = "operator-signup-token-0123"
MakeApi = Callable[..., Api]


@pytest.fixture
def make_api(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[MakeApi]:
    """A fully wired app with these settings (on the parametrised store)."""
    with contextlib.ExitStack() as stack:

        def make(**overrides: Any) -> Api:
            services = build_services(make_settings(**overrides), clock=clock)
            stack.callback(services.close)
            client = stack.enter_context(TestClient(create_app(services.settings, services)))
            return Api(client, services, clock)

        yield make


def body(slug: str) -> dict[str, str]:
    return {
        "slug": slug,
        "name": slug.title(),
        "admin_name": "Admin",
        "admin_email": f"admin@{slug}.example",
        "accept_terms": TERMS,
    }


def signup(api: Api, slug: str, **headers: str) -> httpx.Response:
    return api.call("POST", "/api/v1/tenants", json=body(slug), headers=headers)


def events(api: Api) -> int:
    return api.services.app.recorder.max_notification_id() or 0


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith("/" + kind) and problem["status"] == status
    return problem


def test_signups_from_one_address_are_rate_limited_and_refusals_write_nothing(make_api: MakeApi) -> None:
    api = make_api(signup_per_hour=3)
    assert [signup(api, f"t{i}-co").status_code for i in range(3)] == [201, 201, 201]
    written = events(api)

    refused = assert_problem(signup(api, "t4-co"), 429, "signup-rate-limited")
    assert "try again later" in refused["detail"]
    retry = int(signup(api, "t5-co").headers["retry-after"])
    assert 0 < retry <= 3600 / 3  # one signup comes back every 20 minutes
    assert events(api) == written and "t4-co" not in {t.slug for t in api.services.directory.tenants.values()}

    api.clock.advance(seconds=retry)
    assert signup(api, "t4-co").status_code == 201
    assert signup(api, "t5-co").status_code == 429


def test_all_addresses_together_are_limited_too(make_api: MakeApi) -> None:
    api = make_api(signup_per_hour=10, signup_global_per_hour=2)
    assert [signup(api, f"g{i}-co").status_code for i in range(3)] == [201, 201, 429]


def test_a_closed_server_refuses_signup_and_the_operator_creates_tenants(
    make_api: MakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_api(signup="closed")
    before = events(api)
    refused = assert_problem(signup(api, "acme"), 403, "signup-closed")
    assert "operator" in refused["detail"]
    assert events(api) == before

    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "cli-var"))
    monkeypatch.setenv("OWNLLM_SIGNUP", "closed")
    created = CliRunner().invoke(cli, ["tenants", "create", "--slug", "acme", "--name", "Acme", "--admin-name",
                                       "Ada", "--admin-email", "ada@acme.example"])  # fmt: skip
    assert created.exit_code == 0, created.output
    assert re.search(r"ollm_[A-Za-z0-9_-]{43}", created.output)


def test_invite_mode_needs_an_operator_token(make_api: MakeApi) -> None:
    api = make_api(signup="invite", signup_tokens=f"{TOKEN}, another-token-456789")
    before = events(api)
    for headers in ({}, {"X-Signup-Token": "guess"}, {"X-Signup-Token": TOKEN[:-1]}):
        refused = assert_problem(signup(api, "acme", **headers), 403, "signup-token-required")
        assert "X-Signup-Token" in refused["detail"]
    assert events(api) == before
    assert signup(api, "acme", **{"X-Signup-Token": TOKEN}).status_code == 201
    assert signup(api, "globex", **{"X-Signup-Token": "another-token-456789"}).status_code == 201


def test_guessing_tokens_is_rate_limited_like_signing_up(make_api: MakeApi) -> None:
    api = make_api(signup="invite", signup_tokens=TOKEN, signup_per_hour=2)
    assert [signup(api, "acme", **{"X-Signup-Token": f"guess-{i}"}).status_code for i in range(3)] == [403, 403, 429]


def test_past_the_tenant_cap_signup_answers_503_and_does_not_grow(make_api: MakeApi) -> None:
    api = make_api(max_tenants=2)
    assert [signup(api, s).status_code for s in ("one-co", "two-co")] == [201, 201]
    before = events(api)
    full = assert_problem(signup(api, "three-co"), 503, "tenant-capacity-reached")
    assert "operator" in full["detail"] and "retry-after" not in full
    assert events(api) == before and len(api.services.directory.tenants) == 2


def test_a_taken_slug_says_only_that_it_is_not_available(make_api: MakeApi) -> None:
    api = make_api()
    acme = api.signup("acme", email="ada@acme.example", name="Ada Lovelace")
    before, subject_keys = events(api), _subject_keys(api)

    taken = assert_problem(signup(api, "acme"), 409, "slug-taken")
    assert taken["detail"] == "this slug is not available; choose another"
    text = taken.__repr__()
    for secret in (acme["tenant"]["id"], acme["tenant"]["name"], acme["admin"]["id"], "Ada", "ada@", "acme"):
        assert secret not in text
    assert set(taken) == {"type", "title", "status", "detail"}
    assert events(api) == before and _subject_keys(api) == subject_keys  # nothing sealed for the refused admin


def test_the_stores_refusal_of_a_slug_taken_meanwhile_reads_the_same(make_api: MakeApi) -> None:
    api = make_api()
    api.signup("acme")
    api.services.directory.tenants.clear()  # as if another process had just taken it
    taken = assert_problem(signup(api, "acme"), 409, "slug-taken")
    assert taken["detail"] == "this slug is not available; choose another"


def _subject_keys(api: Api) -> int:
    """Rows in the subject-key store (its SQLite file, or its PostgreSQL table)."""
    settings = api.services.settings
    if settings.persistence == "sqlite":
        with contextlib.closing(sqlite3.connect(Path(settings.var_dir) / "subject-keys.sqlite")) as db:
            return int(db.execute("SELECT count(*) FROM subject_keys").fetchone()[0])
    with psycopg.connect(settings.postgres_dsn) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{settings.postgres_schema}".ownllm_subject_keys').fetchone()
        return int(row[0]) if row else 0


@pytest.mark.parametrize("persistence", ["sqlite"], indirect=True)
def test_forwarded_for_counts_only_behind_a_trusted_proxy(make_settings: Callable[..., Settings]) -> None:
    """Over real sockets: the peer is 127.0.0.1; X-Forwarded-For is believed only when that peer is trusted."""
    # Two proxies (10.9.9.9 then the local one) put the client before them; a client's own forged
    # entry further left changes nothing. Without trusted proxies everyone is the one local peer.
    sent = [
        ("a", "198.51.100.7, 10.9.9.9"),
        ("b", "203.0.113.99, 198.51.100.7, 10.9.9.9"),
        ("c", "198.51.100.8, 198.51.100.7, 10.9.9.9"),
        ("d", "203.0.113.5, 10.9.9.9"),
    ]
    for trusted, expect in (("127.0.0.1, 10.0.0.0/8", [201, 201, 429, 201]), ("", [201, 201, 429, 429])):
        services = build_services(make_settings(signup_per_hour=2, trusted_proxies=trusted))
        server = ServerThread(create_app(services.settings, services), proxy_headers=False).start()
        try:
            statuses = [
                httpx.post(f"{server.base_url}/api/v1/tenants", json=body(f"{slug}-{len(trusted)}"),
                           headers={"X-Forwarded-For": forwarded}).status_code
                for slug, forwarded in sent
            ]  # fmt: skip
        finally:
            server.stop()
            services.close()
        assert statuses == expect, trusted


def test_bad_signup_settings_are_named() -> None:
    cases = [
        ({"OWNLLM_SIGNUP": "invite"}, "OWNLLM_SIGNUP_TOKENS"),
        ({"OWNLLM_SIGNUP": "invite", "OWNLLM_SIGNUP_TOKENS": "short"}, "16 characters"),
        ({"OWNLLM_SIGNUP": "sometimes"}, "OWNLLM_SIGNUP"),
        ({"OWNLLM_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"}, "proxy.local"),
        ({"OWNLLM_MAX_TENANTS": "0"}, "OWNLLM_MAX_TENANTS"),
        ({"OWNLLM_SIGNUP_PER_HOUR": "0"}, "OWNLLM_SIGNUP_PER_HOUR"),
    ]
    for environ, named in cases:
        with pytest.raises(SettingsError, match=named):
            load_settings(environ)
