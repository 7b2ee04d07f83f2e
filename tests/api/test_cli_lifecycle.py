"""The lifecycle commands at the operator's terminal: an export with its zip, a restored account, a sweep,
and a terminated tenant."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.services import build_services
from api.settings import load_settings
from domain.context import SYSTEM, Ctx


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_export_restore_sweep_and_terminate(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("tenants", "create", "--slug", "acme", "--name", "Acme", "--admin-name", "Ada",
        "--admin-email", "ada@acme.example")  # fmt: skip
    invited = run("users", "invite", "--tenant", "acme", "--email", "bob@acme.example", "--role", "member")
    token = re.search(r"ollminv_\S+", invited)
    assert token is not None
    zipped = tmp_path / "acme.zip"
    run("exports", "create", "--tenant", "acme", "--out", str(zipped))
    with zipfile.ZipFile(zipped) as archive:
        assert "manifest.json" in archive.namelist() and "SHA256SUMS" in archive.namelist()
    assert "no tenant with slug 'nope'" in run("exports", "create", "--tenant", "nope", code=1)

    services = build_services(load_settings(inference=False, run_projections=False))
    try:
        bob = services.command(services.app.accept_invite, token=token.group(), name="Bob", request_id="t")
        tenant = next(iter(services.directory.tenants.values()))
        services.command(services.app.request_deletion, Ctx(SYSTEM, tenant.id, "t"), bob.user_id)
    finally:
        services.close()
    assert "restored" in run("users", "restore", "--tenant", "acme", "--email", "bob@acme.example")
    run("policies", "run")
    assert "terminated" in run("tenants", "terminate", "--tenant", "acme")
    assert "terminated" in run("tenants", "terminate", "--tenant", "acme", code=1)  # once
