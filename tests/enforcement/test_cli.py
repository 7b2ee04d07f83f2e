"""`ownllm operator create-token` and `ownllm outbox list` against the embedded store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app
from api.outbox import attach_outbox
from api.services import build_services
from api.settings import load_settings
from domain.context import Ctx


def test_an_operator_token_from_the_cli_opens_the_operator_api_and_the_outbox_lists_notices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    created = CliRunner().invoke(app, ["operator", "create-token", "night-shift"], catch_exceptions=False)
    assert created.exit_code == 0, created.output
    token = re.search(r"ollmop_[A-Za-z0-9_-]{43}", created.output)
    assert token, created.output

    services = build_services(load_settings(inference=False))
    try:
        mailer = attach_outbox(services, start_sender=False)
        with TestClient(create_app(services.settings, services)) as client:
            assert client.get("/api/v1/operator/appeals", headers={"Authorization": f"Bearer {token[0]}"}).json() == []
            acme = services.app.signup(slug="acme", name="Acme", admin_name="A", admin_email="a@acme.example",
                                       request_id="r")  # fmt: skip
            services.command(services.app.suspend, Ctx("operator:x", acme.tenant_id, "r"), kind="tenant",
                             subject_id=acme.tenant_id, reason_code="abuse", summary="spam")  # fmt: skip
            while not mailer.store.all():
                services.reactions.run_once()
    finally:
        services.close()
    outbox_file = tmp_path / "var" / "outbox.sqlite"
    assert outbox_file.stat().st_mode & 0o777 == 0o600  # queued bodies are private like the event store
    listed = CliRunner().invoke(app, ["outbox", "list", "--bodies"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    assert "suspension" in listed.output and "queued" in listed.output and "ongoing abuse" in listed.output
