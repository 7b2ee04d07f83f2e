"""Data exports: a zip with a manifest and checksums, readable only inside its tenant, gone after 24 h."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from api.cli import app as cli
from api.services import Services, build_services
from api.settings import load_settings
from api.sweep_tasks import build_sweeper, export_builder
from domain.context import SYSTEM, Ctx
from tests.api.test_erasure_end_to_end import sweeper
from tests.support.api_client import Api
from tests.support.clock import ManualClock


def _files(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_an_admin_exports_the_tenant_and_a_member_their_own_data(api: Api) -> None:
    admin_key = api.signup("exporting", email="ada@exporting.example", name="Ada")["api_key"]["secret"]
    invite = api.call("POST", "/api/v1/invites", admin_key, json={"email": "bob@exporting.example"}).json()
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": invite["token"], "name": "=Bob"}).json()
    member_key, member_id = joined["api_key"]["secret"], joined["user_id"]

    assert api.call("POST", "/api/v1/exports", member_key).status_code == 403  # the tenant: admins only
    tenant_export = api.call("POST", "/api/v1/exports", admin_key)
    assert tenant_export.status_code == 202 and tenant_export.json()["status"] == "requested", tenant_export.text
    own_export = api.call("POST", "/api/v1/me/export", member_key)
    assert own_export.status_code == 202
    tenant_id, own_id = tenant_export.json()["id"], own_export.json()["id"]
    early = api.call("GET", f"/api/v1/exports/{tenant_id}/download", admin_key)
    assert early.status_code == 409 and "being built" in early.text

    sweeper(api).run_once()
    status = api.call("GET", f"/api/v1/exports/{tenant_id}", admin_key).json()
    assert status["status"] == "completed" and status["download"] == f"/api/v1/exports/{tenant_id}/download"
    zipped = api.call("GET", status["download"], admin_key)
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    assert hashlib.sha256(zipped.content).hexdigest() == status["sha256"] and len(zipped.content) == status["size"]
    files = _files(zipped.content)
    manifest = json.loads(files["manifest.json"])
    assert {"tenant.json", "users.json", "users.csv", "roles.json", "api_keys.json", "api_keys.csv", "agents.json",
            "usage.csv", "audit_events.jsonl", "deletions.json", "terms.json", "billing.json",
            } == {f["name"] for f in manifest["files"]}  # fmt: skip
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["name"]]).hexdigest() == entry["sha256"]
        assert f"{entry['sha256']}  {entry['name']}" in files["SHA256SUMS"].decode()
    assert manifest["not_present"] == []
    terms = json.loads(files["terms.json"])
    assert terms["terms_accepted_version"] >= 1 and terms["model_licences_accepted"] == []
    billing = json.loads(files["billing.json"])
    assert billing == {"account": None, "subscription": None, "invoices": [], "payments": [], "credit_lots": []}
    users = list(csv.DictReader(io.StringIO(files["users.csv"].decode("utf-8-sig"))))
    assert {u["email"] for u in users} == {"ada@exporting.example", "bob@exporting.example"}
    assert "'=Bob" in {u["name"] for u in users}  # a spreadsheet shows the name, never runs it
    assert b"secret_hash" not in files["api_keys.json"] and b"ollm_" not in zipped.content
    assert any(json.loads(line)["action"] == "user.joined" for line in files["audit_events.jsonl"].splitlines())

    # the member's own export holds only them; each export is readable by its own side only
    assert api.call("GET", f"/api/v1/exports/{tenant_id}", member_key).status_code == 404
    assert api.call("GET", f"/api/v1/exports/{own_id}", admin_key).status_code == 404
    own = _files(api.call("GET", f"/api/v1/exports/{own_id}/download", member_key).content)
    assert [u["id"] for u in json.loads(own["users.json"])] == [member_id]
    assert b"ada@exporting.example" not in b"".join(own.values())
    assert [e["id"] for e in api.call("GET", "/api/v1/exports", member_key).json()] == [own_id]
    assert [e["id"] for e in api.call("GET", "/api/v1/exports", admin_key).json()] == [tenant_id]
    other = api.signup("other-tenant", email="eve@other.example")["api_key"]["secret"]
    assert api.call("GET", f"/api/v1/exports/{tenant_id}/download", other).status_code == 404

    # 24 hours later the link has expired and the file is gone
    api.clock.advance(hours=24)
    assert api.call("GET", status["download"], admin_key).status_code == 410
    sweeper(api).run_once()
    assert api.call("GET", f"/api/v1/exports/{tenant_id}", admin_key).json()["status"] == "expired"
    assert not (Path(api.services.settings.exports_path) / f"{tenant_id}.zip").exists()
    audit = api.call("GET", "/api/v1/audit", admin_key, params={"action_prefix": "data_export."}).json()
    assert {"data_export.requested", "data_export.completed", "data_export.downloaded",
            "data_export.expired"} <= {row["action"] for row in audit}  # fmt: skip


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    var = tmp_path_factory.mktemp("exports") / "var"
    services = build_services(load_settings({}, var_dir=str(var), inference=False, nats_public_url="tls://n:4222"),
                              start_runner=False, clock=ManualClock(datetime(2027, 3, 1, tzinfo=UTC)))  # fmt: skip
    yield services
    services.close()


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8)


def _populate(services: Services, people: list[str], keys: int) -> tuple[UUID, set[str]]:
    """A tenant with ``people``, a few keys and usage; every identifying string of it."""
    slug = f"t-{uuid.uuid4().hex[:12]}"
    marker = uuid.uuid4().hex[:10]
    signed = services.app.signup(slug=slug, name=f"Org {marker}", admin_name=f"Admin {marker}",
                                 admin_email=f"admin-{marker}@{slug}.example", request_id=f"r-{slug}")  # fmt: skip
    ctx = Ctx(SYSTEM, signed.tenant_id, f"r-{slug}")
    strings = {slug, marker, str(signed.tenant_id), str(signed.admin_user_id), signed.admin_key.prefix}
    services.runner.catch_up()
    for n, person in enumerate(people):
        invite = services.app.invite_user(ctx, email=f"{person}-{n}-{marker}@{slug}.example", role="member")
        joined = services.app.accept_invite(token=invite.secret, name=f"{person} {marker}", request_id=f"j{n}")
        strings |= {str(joined.user_id), joined.api_key.prefix}
        services.runner.catch_up()
        for k in range(keys):
            issued = services.app.issue_api_key(ctx, user_id=joined.user_id, name=f"key{k}-{marker}",
                                                scopes=["inference"])  # fmt: skip
            strings |= {str(issued.id), issued.prefix}
            services.app.record_usage(
                tenant_id=signed.tenant_id, user_id=joined.user_id, key_id=issued.id, agent_id=None,
                model=f"model-{marker}", endpoint="chat", stream=False, status="ok", prompt_tokens=3,
                completion_tokens=2, ttft_ms=1, duration_ms=4, request_id=str(uuid.uuid4()),
            )  # fmt: skip
    services.runner.catch_up()
    return signed.tenant_id, strings


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a_people=st.lists(names, max_size=3), b_people=st.lists(names, min_size=1, max_size=3),
       keys=st.integers(0, 2), user_export=st.booleans())  # fmt: skip
def test_an_export_of_tenant_a_never_holds_anything_of_tenant_b(
    two_tenants: Services, a_people: list[str], b_people: list[str], keys: int, user_export: bool
) -> None:
    services = two_tenants
    tenant_a, a_strings = _populate(services, a_people, keys)
    _, b_strings = _populate(services, b_people, keys)
    subject = services.directory.tenant_users(tenant_a)[-1].id if user_export else None
    export_id = services.command(services.app.request_export, Ctx(SYSTEM, tenant_a, str(uuid.uuid4())),
                                 scope="user" if user_export else "tenant", subject_id=subject)  # fmt: skip
    built = export_builder(services).build(services.lifecycle.exports[export_id], services.app.clock())
    content = Path(services.settings.exports_path, f"{export_id}.zip").read_bytes()
    assert len(content) == built.size
    everything = b"".join(_files(content).values())
    assert str(tenant_a).encode() in everything  # the search reads the real contents
    if not user_export:
        assert [s for s in a_strings if s.encode() not in everything] == []  # all of A's, none of B's
    leaked = [s for s in b_strings if s.encode() in everything]
    assert leaked == []


def test_ownllm_exports_create_builds_one_with_a_progress_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OWNLLM_INFERENCE", "false")
    monkeypatch.setenv("OWNLLM_NATS_PUBLIC_URL", "tls://n:4222")
    services = build_services(load_settings(), start_runner=False)
    services.app.signup(slug="cli-export", name="C", admin_name="A", admin_email="a@c.example", request_id="r")
    services.close()
    runner = CliRunner()
    made = runner.invoke(cli, ["exports", "create", "--tenant", "cli-export", "--out", str(tmp_path / "x.zip")])
    assert made.exit_code == 0, made.output
    assert "export" in made.output and "sha256" in made.output
    files = _files((tmp_path / "x.zip").read_bytes())
    assert json.loads(files["users.json"])[0]["email"] == "a@c.example"
    mine = runner.invoke(cli, ["exports", "create", "--tenant", "cli-export", "--email", "A@c.example"])
    assert mine.exit_code == 0, mine.output
    assert runner.invoke(cli, ["exports", "create", "--tenant", "nope"]).exit_code == 1
    # the sweeper of a later run sees the exports complete and expires them after 24 h
    later = build_services(load_settings(), start_runner=False)
    try:
        sweep = build_sweeper(later)
        later.sweeper = sweep
        assert sweep.run_once(datetime.now(UTC) + timedelta(hours=25))["exports-expired"] == 2
        assert list(Path(later.settings.exports_path).glob("*.zip")) == []
    finally:
        later.close()
