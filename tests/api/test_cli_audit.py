"""`ownllm replay` and `ownllm projections rebuild audit` at the operator's terminal."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.services import build_services
from api.settings import load_settings
from domain.context import SYSTEM, Ctx
from domain.ids import tenant_id_for
from projections.audit_log import AuditFilter


def test_replay_shows_the_tenant_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    services = build_services(load_settings(var_dir=str(tmp_path / "var"), inference=False), start_runner=False)
    signed = services.app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                                 request_id="r1")  # fmt: skip
    ctx = Ctx(SYSTEM, tenant_id_for("acme"), "r2")
    invite = services.app.invite_user(ctx, email="bob@acme.example", role="member")
    bob = services.app.accept_invite(token=invite.secret, name="[/]Bob", request_id="r3")
    services.command(services.app.change_role, ctx, bob.user_id, "auditor", "")
    rows = list(services.audit.scan(AuditFilter(signed.tenant_id)))
    services.close()
    joined_at = next(
        r.entry.time for r in rows if r.entry.action == "user.joined" and r.entry.subject_id == bob.user_id
    )

    runner = CliRunner()
    then = runner.invoke(app, ["replay", "--tenant", "acme", "--as-of", joined_at.isoformat()])
    assert then.exit_code == 0, then.output
    bob_line = next(line for line in then.output.splitlines() if str(bob.user_id)[:8] in line)
    assert "[/]Bob" in bob_line and "member" in bob_line
    now = runner.invoke(app, ["replay", "--tenant", "acme", "--as-of", rows[-1].entry.time.isoformat()])
    assert "auditor" in next(line for line in now.output.splitlines() if str(bob.user_id)[:8] in line)

    early = runner.invoke(
        app, ["replay", "--tenant", "acme", "--as-of", (rows[0].entry.time - timedelta(seconds=1)).isoformat()]
    )
    assert early.exit_code == 1 and "did not exist" in early.output
    naive = runner.invoke(app, ["replay", "--tenant", "acme", "--as-of", "2027-01-01T00:00:00"])
    assert naive.exit_code == 2 and "timezone" in naive.output
    rebuilt = runner.invoke(app, ["projections", "rebuild", "audit"])
    assert rebuilt.exit_code == 0 and "replayed" in rebuilt.output
