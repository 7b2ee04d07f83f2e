"""The integrity ledger at the operator's terminal (`ownllm audit ...`) and over HTTP (checkpoints, public key)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.services import build_services
from api.settings import load_settings
from domain.context import SYSTEM, Ctx
from domain.ids import tenant_id_for
from projections.integrity.checkpoints import open_checkpoint
from projections.integrity.note_keys import Verifier
from tests.api.test_audit_log import _join
from tests.support.api_client import Api


def _tenant_story(tmp_path: Path) -> None:
    services = build_services(load_settings(var_dir=str(tmp_path / "var"), inference=False), start_runner=False)
    for slug in ("acme", "beta"):
        services.app.signup(slug=slug, name=slug, admin_name="Ada", admin_email=f"ada@{slug}.example", request_id="r")
        services.app.invite_user(Ctx(SYSTEM, tenant_id_for(slug), "r2"), email="bob@x.example", role="member")
    services.close()


def test_export_then_verify_offline_and_live_and_a_tampered_store_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OWNLLM_INFERENCE", "false")
    _tenant_story(tmp_path)
    runner = CliRunner()
    exported = runner.invoke(app, ["audit", "export", "--tenant", "acme", str(tmp_path / "b1")])
    assert exported.exit_code == 0, exported.output
    verified = runner.invoke(app, ["audit", "verify", str(tmp_path / "b1")])
    assert verified.exit_code == 0, verified.output
    assert "2/2 checkpoints valid" in verified.output and "4/4 events verified" in verified.output
    live = runner.invoke(app, ["audit", "verify", "--live"])
    assert live.exit_code == 0, live.output
    assert "8/8 events verified" in live.output
    assert "0/0 credit-ledger snapshots match their events" in live.output  # no tenant on credits here

    # the tenant saves its checkpoints; more happens; a new export extends what it saved
    pinned = tmp_path / "pinned.txt"
    pinned.write_text(json.loads((tmp_path / "b1" / "checkpoints.json").read_text())["tenant"][-1])
    services = build_services(load_settings(inference=False), start_runner=False)
    services.app.invite_user(Ctx(SYSTEM, tenant_id_for("acme"), "r3"), email="cy@x.example", role="member")
    services.close()
    assert runner.invoke(app, ["audit", "checkpoint"]).exit_code == 0
    assert runner.invoke(app, ["audit", "export", "--tenant", "acme", str(tmp_path / "b2")]).exit_code == 0
    again = runner.invoke(app, ["audit", "verify", str(tmp_path / "b2"), "--pinned", str(pinned)])
    assert again.exit_code == 0 and "1/1 pinned checkpoints extended" in again.output, again.output

    # someone edits one stored event in the database: --live names its position
    with sqlite3.connect(tmp_path / "var" / "events.sqlite") as db:
        state = db.execute("SELECT state FROM stored_events WHERE rowid = 3").fetchone()[0]
        assert b'"r"' in state
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = 3", (state.replace(b'"r"', b'"q"', 1),))
    db.close()
    broken = runner.invoke(app, ["audit", "verify", "--live"])
    assert broken.exit_code == 1 and "FAILED: first bad position 0" in broken.output, broken.output
    assert "in positions 0..7" in broken.output  # between two checkpoints: the first one covers 8
    # a bundle edited on disk fails offline with no database at all
    events = tmp_path / "b1" / "events.jsonl"
    events.write_text(events.read_text().replace('"leaf":1,', '"leaf":2,', 1))
    assert runner.invoke(app, ["audit", "verify", str(tmp_path / "b1")]).exit_code == 1


def test_checkpoints_and_public_key_over_http(api: Api) -> None:
    admin = api.signup("acme")["api_key"]["secret"]
    api.signup("beta")
    auditor, _ = _join(api, admin, "dan@acme.example", "auditor", "Dan")
    member, _ = _join(api, admin, "bob@acme.example", "member", "Bob")
    ledger = api.services.ledger
    assert ledger is not None
    head = api.services.runner.log.head()
    for _ in range(1000):  # the polling thread feeds the ledger (at most 10 s)
        if ledger.stored_position() >= head:
            break
        time.sleep(0.01)
    ledger.checkpoint()

    assert api.call("GET", "/api/v1/audit/checkpoints", member).status_code == 403
    keys = api.call("GET", "/api/v1/audit/public-key").json()
    verifier = Verifier.parse(keys["current"])
    assert keys["origin"] == ledger.origin and keys["retired"] == []

    first = api.call("GET", "/api/v1/audit/checkpoints?limit=1", auditor)
    assert first.status_code == 200, first.text
    rows = first.json()
    acme, beta = str(tenant_id_for("acme")), str(tenant_id_for("beta"))
    assert {r["kind"] for r in rows} <= {"global", "tenant"} and rows
    seen = list(rows)
    link = first.headers.get("link")
    while link:
        page = api.call("GET", link.split(">")[0].lstrip("<"), auditor)
        seen += page.json()
        link = page.headers.get("link")
    assert not any(beta in r["origin"] for r in seen)  # never another tenant's
    assert any(r["origin"].endswith(f"/tenant/{acme}") for r in seen)
    sizes = [r["global_size"] for r in seen]
    assert sizes == sorted(sizes) and len({(r["origin"], r["size"]) for r in seen}) == len(seen)
    for row in seen:
        checkpoint, _ = open_checkpoint(row["note"], [verifier])
        assert checkpoint.size == row["size"]
    assert api.call("GET", "/api/v1/audit/checkpoints?after=-1", auditor).status_code == 422
