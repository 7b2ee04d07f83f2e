"""Pairing never sends the pairing key over plain http to another machine."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.cli import app
from agent.pairing import PairingError, check_base_url, pair

ANSWER = {"agent_id": "a", "tenant_id": "t", "nats_url": "tls://n:4222", "nats_user": "u", "nats_password": "p"}


def recording_client(sent: list[httpx.Request]) -> httpx.Client:
    """An httpx client whose transport records requests and answers like the platform."""

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json=ANSWER)

    return httpx.Client(transport=httpx.MockTransport(handle))


@pytest.mark.parametrize(
    "url", ["http://ownllm.example", "http://10.0.0.5:8000", "http://[2001:db8::1]/", "http://localhost.evil.example"]
)
def test_plain_http_to_another_host_is_refused_before_sending(url: str) -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(PairingError, match="plain http"):
        pair(url, "pk-secret", "box", client=recording_client(sent))
    assert sent == []


@pytest.mark.parametrize("url", ["ftp://ownllm.example", "ownllm.example", "https://", "file:///etc/passwd"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(PairingError):
        check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://ownllm.example",
        "http://127.0.0.1:8000",
        "http://localhost:8000/",
        "http://[::1]:8000",
        "http://127.1.2.3",
    ],
)
def test_https_and_loopback_http_are_allowed(url: str) -> None:
    sent: list[httpx.Request] = []
    assert pair(url, "pk-secret", "box", client=recording_client(sent)).agent_id == "a"
    assert len(sent) == 1


@given(st.ip_addresses())
def test_http_is_allowed_exactly_for_loopback_addresses(address: object) -> None:
    host = f"[{address}]" if ":" in str(address) else str(address)
    loopback = getattr(address, "is_loopback", False)
    try:
        check_base_url(f"http://{host}:8000")
        allowed = True
    except PairingError:
        allowed = False
    assert allowed == loopback


def test_the_cli_says_why(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app, ["pair", "--url", "http://ownllm.example", "--pairing-key", "pk-x", "--credentials", f"{tmp_path}/c.json"]
    )
    assert result.exit_code == 1
    assert "https://" in result.output and "plain http" in result.output
