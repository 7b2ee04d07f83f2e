"""The `ownllm` CLI against a real event store: an operator's day at the terminal."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.services import build_services
from api.settings import load_settings
from domain.context import SYSTEM, Ctx
from domain.ids import tenant_id_for


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    invoke.runner = runner  # type: ignore[attr-defined]
    return invoke


def test_an_operator_creates_a_tenant_invites_issues_and_revokes(run) -> None:  # type: ignore[no-untyped-def]
    created = run("tenants", "create", "--slug", "acme", "--name", "Acme", "--admin-name", "Ada",
                  "--admin-email", "ada@acme.example")  # fmt: skip
    assert re.search(r"ollm_[A-Za-z0-9_-]{43}", created)
    assert "acme" in run("tenants", "list")
    invite = run("users", "invite", "--tenant", "acme", "--email", "bob@acme.example", "--role", "auditor")
    assert "ollminv_" in invite
    issued = run("keys", "issue", "--tenant", "acme", "--email", "ada@acme.example", "--scope", "inference",
                 "--scope", "admin:read", "--expires-in-days", "30")  # fmt: skip
    key_id = re.search(r"key ([0-9a-f-]{36})", issued).group(1)  # type: ignore[union-attr]
    assert "revoked" in run("keys", "revoke", key_id, "--tenant", "acme", "--reason", "lost laptop")

    tail = run("events", "tail", "--limit", "50")
    assert "ApiKey.Revoked" in tail and "reason=<sealed>" in tail
    assert "ada@acme.example" not in tail and "<sealed>" in tail
    assert "replayed" in run("projections", "rebuild", "usage")
    revealed = run("events", "tail", "--limit", "50", "--reveal")
    assert "ada@acme.example" in revealed and "reason=lost laptop" in revealed


def test_cli_errors_are_clear(run) -> None:  # type: ignore[no-untyped-def]
    runner: CliRunner = run.runner
    missing = runner.invoke(app, ["users", "invite", "--tenant", "nope", "--email", "a@b.example"])
    assert missing.exit_code == 1 and "no tenant with slug 'nope'" in missing.output
    bad = runner.invoke(app, ["tenants", "create", "--slug", "API", "--name", "x", "--admin-name", "y",
                              "--admin-email", "y@x.example"])  # fmt: skip
    assert bad.exit_code == 1 and "slug" in bad.output


def test_cli_names_a_bad_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("OWNLLM_PERSISTANCE", "postgres")
    result = CliRunner().invoke(app, ["tenants", "list"])
    assert result.exit_code == 2 and "OWNLLM_PERSISTANCE" in result.output


def test_help_explains_itself() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("serve", "tenants", "users", "keys", "events"):
        assert word in result.output


def test_keys_go_to_the_current_user_of_a_re_invited_email(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("tenants", "create", "--slug", "acme", "--name", "Acme", "--admin-name", "Ada",
        "--admin-email", "ada@acme.example")  # fmt: skip
    services = build_services(load_settings(var_dir=str(tmp_path / "var"), inference=False), start_runner=False)
    try:
        app_ = services.app
        ctx = Ctx(actor=SYSTEM, tenant_id=tenant_id_for("acme"), request_id="t")
        first = app_.accept_invite(token=app_.invite_user(ctx, email="bob@acme.example", role="member").secret,
                                   name="Bob", request_id="t1")  # fmt: skip
        app_.remove_user(ctx, first.user_id, "left")
        again = app_.accept_invite(token=app_.invite_user(ctx, email="bob@acme.example", role="member").secret,
                                   name="Bob", request_id="t2")  # fmt: skip
    finally:
        services.close()
    issued = run("keys", "issue", "--tenant", "acme", "--email", "Bob@Acme.example")
    key_id = re.search(r"key ([0-9a-f-]{36})", issued).group(1)  # type: ignore[union-attr]
    services = build_services(load_settings(var_dir=str(tmp_path / "var"), inference=False), start_runner=False)
    try:
        assert services.directory.keys[UUID(key_id)].user_id == again.user_id != first.user_id
    finally:
        services.close()


def test_names_with_markup_or_newlines_print_as_written_on_one_line(run) -> None:  # type: ignore[no-untyped-def]
    """rich reads ``[...]`` as markup (``[/]`` raised MarkupError) and a newline forged a line of its own."""
    run("tenants", "create", "--slug", "markup", "--name", "[/]", "--admin-name", "[bold]Ada[/bold]",
        "--admin-email", "ada@markup.example")  # fmt: skip
    run("tenants", "create", "--slug", "forger", "--name", "a\nb\x1b[2J", "--admin-name", "Bo",
        "--admin-email", "bo@forger.example")  # fmt: skip
    listed = run("tenants", "list")
    assert "[/]" in listed and "a\\nb\\x1b[2J" in listed
    assert "\x1b" not in listed and not any(line.strip(" │┃|") == "b" for line in listed.splitlines())

    issued = run("keys", "issue", "--tenant", "forger", "--email", "bo@forger.example", "--name", "[red]k\n")
    key_id = re.search(r"key ([0-9a-f-]{36})", issued).group(1)  # type: ignore[union-attr]
    forged = "    99 2026-01-01 00:00:00 Tenant.Suspended"
    run("keys", "revoke", key_id, "--tenant", "forger", "--reason", f"lost\n{forged}")
    for tail in (run("events", "tail", "--limit", "50"), run("events", "tail", "--limit", "50", "--reveal")):
        lines = tail.splitlines()
        assert not any(line.startswith(forged.strip()) or line.startswith(forged) for line in lines)
        assert "\x1b" not in tail
    sealed = run("events", "tail", "--limit", "50").splitlines()
    assert sum("Tenant.Registered" in line and "name=<sealed>" in line for line in sealed) == 2  # sealed by default
    revealed = run("events", "tail", "--limit", "50", "--reveal").splitlines()
    assert any("Tenant.Registered" in line and "name=[/]" in line for line in revealed)
    assert any("Tenant.Registered" in line and "name=a\\nb\\x1b[2J" in line for line in revealed)
    assert any("ApiKey.Revoked" in line and f"reason=lost\\n{forged}" in line for line in revealed)
    assert any("User.Joined" in line and "name=[bold]Ada[/bold]" in line for line in revealed)
    assert any("ApiKey.Issued" in line and "name=[red]k" in line for line in revealed)


def test_an_error_quoting_user_input_prints_it_literally(run) -> None:  # type: ignore[no-untyped-def]
    runner: CliRunner = run.runner
    missing = runner.invoke(app, ["users", "invite", "--tenant", "[/]no\nwhere", "--email", "a@b.example"])
    assert missing.exit_code == 1, missing.output
    assert "no tenant with slug '[/]no\\nwhere'" in missing.output
