"""Tenant termination (OwnLLM terms §11): access stops at once; every member and the tenant's own sealed
data (its name included) are erased within 30 days, in every process; the operator may restore a user's
account before its deletion is due."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from api.audit_names import Names
from api.cli import app as cli
from api.services import Services, build_services
from api.settings import load_settings
from domain.context import SYSTEM, Ctx
from domain.deletion import Deletion
from domain.sealing import ERASED, PersonalData
from tests.api.test_erasure_end_to_end import _key_store_bytes, _wait_for, _zip_files, sweeper
from tests.support.api_client import Api
from tests.support.stores import holds, store_bytes


def _pair(api: Api, admin: str, name: str) -> dict[str, Any]:
    issued = api.call("POST", "/api/v1/pairing-keys", admin).json()
    answer = api.call("POST", "/api/v1/agents/pair", json={"pairing_key": issued["secret"], "name": name})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


CANARY_TENANT = "Quillon Tenantcanary Consulting"  # a sole trader's business name: personal data


def _tenant_export(api: Api, admin_key: str) -> bytes:
    """A whole-tenant export, built by the sweeper and downloaded: every file's bytes."""
    asked = api.call("POST", "/api/v1/exports", admin_key)
    assert asked.status_code == 202, asked.text
    sweeper(api).run_once()
    download = api.call("GET", f"/api/v1/exports/{asked.json()['id']}/download", admin_key)
    assert download.status_code == 200, download.text
    return b"".join(_zip_files(download.content))


def test_a_terminated_tenant_is_erased_within_thirty_days(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    signed = api.signup("terminated", email="ada@terminated.example", org=CANARY_TENANT)
    admin_key = signed["api_key"]["secret"]
    assert signed["tenant"]["name"] == CANARY_TENANT
    invite = api.call("POST", "/api/v1/invites", admin_key, json={"email": "bob@terminated.example"}).json()
    api.call("POST", "/api/v1/invites/accept", json={"token": invite["token"], "name": "Bob Terminus"})
    api.call("POST", "/api/v1/invites", admin_key, json={"email": "never-joined@terminated.example"})
    agent = _pair(api, admin_key, "gpu-box-terminus")
    tenant_id = next(iter(api.services.directory.tenants))
    bystander = api.signup("bystander", email="cy@bystander.example")["api_key"]["secret"]
    assert CANARY_TENANT.encode() in _tenant_export(api, admin_key)  # the export holds the name (and can fail)
    assert api.call("GET", "/api/v1/tenant", admin_key).json()["name"] == CANARY_TENANT
    second = build_services(api.services.settings, clock=api.clock)  # a second API process on the same stores
    try:
        assert second.directory.tenants[tenant_id].name == CANARY_TENANT  # it unsealed (and cached) the key
        _terminate_and_sweep(api, tenant_id, admin_key)
        waited = _wait_for(lambda: second.directory.tenants[tenant_id].name == ERASED, timeout_s=1.0)
        assert second.directory.tenants[tenant_id].name == ERASED, f"still named after {waited:.2f} s"
        assert second.keys.key_for(tenant_id, create=False) is None  # it forgot the cached key
    finally:
        second.close()
    _the_tenant_name_is_gone(api, tenant_id)
    assert caplog.records and CANARY_TENANT not in caplog.text  # nor in any log line

    directory = api.services.directory

    assert {(u.name, u.email, u.status) for u in directory.tenant_users(tenant_id)} == {(ERASED, ERASED, "erased")}
    assert {i.email for i in directory.tenant_invites(tenant_id)} == {ERASED}
    assert [(a.name, a.revoked_at is not None) for a in directory.tenant_agents(tenant_id)] == [(ERASED, True)]
    assert agent["agent_id"] in {str(a.id) for a in directory.tenant_agents(tenant_id)}
    assert api.services.keys.key_for(tenant_id, create=False) is None  # the tenant's own sealed data
    raw = store_bytes(api.services.settings)
    for canary in ("ada@terminated.example", "Bob Terminus", "never-joined@terminated.example", "gpu-box-terminus",
                   CANARY_TENANT):  # fmt: skip
        assert not holds(raw, canary)
    assert api.call("GET", "/api/v1/keys", bystander).status_code == 200  # another tenant is untouched
    assert directory.users[next(u.id for u in directory.tenant_users(next(
        t for t in directory.tenants if t != tenant_id)))].email == "cy@bystander.example"  # fmt: skip


def _terminate_and_sweep(api: Api, tenant_id: UUID, admin_key: str) -> None:
    erase_by = api.services.command(api.services.app.terminate_tenant, Ctx(SYSTEM, tenant_id, "t"), "contract ended")
    refused = api.call("GET", "/api/v1/keys", admin_key)
    assert refused.status_code == 403 and "terminated" in refused.text
    api.clock.advance(days=29, hours=23)
    assert sweeper(api).run_once()["deletions-due"] == 0  # not yet (the export's 24 h link expired meanwhile)
    assert api.services.directory.tenants[tenant_id].name == CANARY_TENANT  # nor the name
    api.clock.now = erase_by
    assert sweeper(api).run_once()["deletions-due"] > 0
    assert sum(sweeper(api).run_once().values()) == 0


def _the_tenant_name_is_gone(api: Api, tenant_id: UUID) -> None:
    """Every reader shows ``<erased>``; no store, read model, key store or export holds the name."""
    services: Services = api.services
    tenant = services.directory.tenants[tenant_id]
    assert (tenant.name, tenant.slug) == (ERASED, "terminated")  # the slug is an identifier: kept (domain/tenant.py)
    assert Names(services.directory, tenant_id).subject("tenant", tenant_id) == ERASED  # audit names, exports
    assert Names(services.directory, tenant_id).every_subject()[str(tenant_id)] == ERASED
    for notification in services.app.recorder.select_notifications(1, 10_000):
        event = services.app.mapper.to_domain_event(notification)
        for value in vars(event).values():
            assert not (isinstance(value, PersonalData) and value.subject_id == tenant_id and value.value != ERASED)
    raw = store_bytes(services.settings)  # the events and every read model table in the store
    assert holds(raw, "terminated") and not holds(raw, CANARY_TENANT)
    assert not holds(_key_store_bytes(services.settings), CANARY_TENANT)
    assert list(Path(services.settings.exports_path).glob("*")) == []  # its export's file is gone


def test_the_operator_terminates_and_restores_from_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OWNLLM_INFERENCE", "false")
    monkeypatch.setenv("OWNLLM_NATS_PUBLIC_URL", "tls://n:4222")
    services = build_services(load_settings(), start_runner=False)
    for slug in ("keeps", "leaves"):
        services.app.signup(slug=slug, name="K", admin_name="A", admin_email=f"a@{slug}.example", request_id="r")
    services.runner.catch_up()
    keeps = next(t.id for t in services.directory.tenants.values() if t.slug == "keeps")
    ctx = Ctx(SYSTEM, keeps, "r")
    invite = services.app.invite_user(ctx, email="b@keeps.example", role="member")
    joined = services.app.accept_invite(token=invite.secret, name="B", request_id="j")
    services.runner.catch_up()
    services.app.request_deletion(ctx, joined.user_id, "user")
    services.close()

    runner = CliRunner()
    restored = runner.invoke(cli, ["users", "restore", "--tenant", "keeps", "--email", "b@keeps.example"])
    assert restored.exit_code == 0, restored.output
    again = runner.invoke(cli, ["users", "restore", "--tenant", "keeps", "--email", "b@keeps.example"])
    assert again.exit_code == 1  # nothing pending any more
    ended = runner.invoke(cli, ["tenants", "terminate", "--tenant", "leaves"])
    assert ended.exit_code == 0 and "erased by" in ended.output, ended.output
    assert runner.invoke(cli, ["tenants", "terminate", "--tenant", "leaves"]).exit_code == 1
    reopened = build_services(load_settings(), start_runner=False)
    try:
        assert reopened.lifecycle.deletions[Deletion.create_id(joined.user_id, 0)].status == "cancelled"
        leaves = next(t for t in reopened.directory.tenants.values() if t.slug == "leaves")
        assert leaves.terminated and len(reopened.lifecycle.pending) == 2  # its admin and the tenant itself
    finally:
        reopened.close()
