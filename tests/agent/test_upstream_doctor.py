"""``ownllm-agent doctor`` checks the upstream: reachable, its models, a one-token completion, latency."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from agent.backends.upstream_config import UpstreamConfig
from agent.backends.upstream_doctor import upstream_rows
from agent.cli import app
from tests.agent.fake_upstream import FakeUpstream, answer_host, served


@pytest.fixture
def fake() -> Iterator[tuple[FakeUpstream, str]]:
    app_ = FakeUpstream(models={"echo": 8192, "no-usage": None})
    with served(app_) as url:
        yield app_, url


def test_a_healthy_upstream_reports_models_and_a_one_token_completion(fake) -> None:
    _, url = fake
    rows = dict(upstream_rows(UpstreamConfig(url=url, context_length=2048)))
    assert "reachable" in rows["upstream"] and " ms" in rows["upstream"]
    assert rows["upstream models"] == "echo (context 8192), no-usage (context 2048)"
    assert rows["one-token completion (echo)"].startswith("ok, first event in ")
    assert "usage reported" in rows["one-token completion (echo)"]


def test_a_server_without_usage_is_flagged(fake) -> None:
    _, url = fake
    rows = dict(upstream_rows(UpstreamConfig(url=url, routes=(("x", "no-usage"),))))
    assert "token counts will be estimated" in rows["one-token completion (x)"]


def test_wrong_key_and_unreachable(fake) -> None:
    app_, url = fake
    app_.key = "sk-right"
    assert "HTTP 401 (check the upstream key)" in dict(upstream_rows(UpstreamConfig(url=url)))["upstream"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert "not reachable" in dict(upstream_rows(UpstreamConfig(url=f"http://127.0.0.1:{port}/v1")))["upstream"]


def test_a_host_that_now_resolves_to_a_public_address_is_not_asked(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor connects as jobs do: a host checked at start whose answer turned public gets no request."""
    app_, url = fake
    app_.key = "sk-doctor-key"
    answer_host(monkeypatch, "upstream.internal", urlsplit(url).port or 0, "93.184.216.34")
    config = UpstreamConfig(url=url.replace("127.0.0.1", "upstream.internal"), api_key="sk-doctor-key")
    finding = dict(upstream_rows(config))["upstream"]
    assert "not reachable" in finding and "resolves to a public address (93.184.216.34)" in finding
    assert app_.seen_keys == [] and app_.model_polls == 0


def test_the_cli_doctor_shows_the_upstream(fake, tmp_path: Path) -> None:
    app_, url = fake
    app_.key = "sk-doctor-key"
    key = tmp_path / "key"
    key.write_text("sk-doctor-key\n")
    key.chmod(0o600)
    result = CliRunner().invoke(app, ["doctor", "--upstream-url", url, "--upstream-key-file", str(key)], env={})
    assert result.exit_code == 0, result.output
    assert "upstream models" in result.output and "echo (context 8192)" in result.output
    assert "sk-doctor-key" not in result.output
    remote = CliRunner().invoke(app, ["doctor", "--upstream-url", "http://8.8.8.8/v1"], env={})
    assert "not usable" in remote.output and "allow-remote" in remote.output
