"""Agents are told OWNLLM_NATS_PUBLIC_URL at pairing, never the proxy's internal NATS URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from api.app import create_app
from api.services import Services, build_services
from api.settings import Settings, SettingsError, agent_nats_url, load_settings
from tests.conftest import PUBLIC_NATS
from tests.support.api_client import Api
from tests.support.clock import ManualClock


def pair(api: Api, slug: str) -> tuple[int, dict[str, object]]:
    """Sign up, issue a pairing key and redeem it; the status and body of the pairing answer."""
    admin = api.signup(slug)["api_key"]["secret"]
    secret = api.call("POST", "/api/v1/pairing-keys", admin).json()["secret"]
    answer = api.call("POST", "/api/v1/agents/pair", json={"pairing_key": secret, "name": "gpu"})
    return answer.status_code, answer.json()


def test_pairing_hands_out_the_public_url(api: Api) -> None:
    status, body = pair(api, "public")
    assert status == 201
    assert body["nats_url"] == PUBLIC_NATS


@pytest.fixture
def api_with(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Callable[..., Api]]:
    """An in-process API over settings built directly (skipping load_settings' start checks)."""
    opened: list[tuple[TestClient[Litestar], Services]] = []

    def make(**overrides: object) -> Api:
        services = build_services(make_settings(nats_public_url="", **overrides), clock=clock)
        client = TestClient(create_app(services.settings, services))
        client.__enter__()
        opened.append((client, services))
        return Api(client, services, clock)

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.close()


@pytest.mark.parametrize("persistence", ["sqlite"], indirect=True)
def test_without_a_public_url_pairing_refuses_and_keeps_the_key(api_with: Callable[..., Api]) -> None:
    api = api_with()
    admin = api.signup("nourl")["api_key"]["secret"]
    secret = api.call("POST", "/api/v1/pairing-keys", admin).json()["secret"]
    refused = api.call("POST", "/api/v1/agents/pair", json={"pairing_key": secret, "name": "gpu"})
    assert refused.status_code == 503
    assert "OWNLLM_NATS_PUBLIC_URL" in refused.json()["detail"]
    keys = api.call("GET", "/api/v1/pairing-keys", admin).json()
    assert [k["status"] for k in keys] == ["open"]


def test_an_internal_nats_url_is_never_handed_out() -> None:
    internal = Settings(nats_url="nats://nats-1.internal:4222")
    assert agent_nats_url(internal) == ""
    assert agent_nats_url(Settings(nats_url="nats://127.0.0.1:4222")) == "nats://127.0.0.1:4222"
    assert agent_nats_url(Settings(nats_url="nats://nats-1.internal:4222", nats_public_url=PUBLIC_NATS)) == PUBLIC_NATS


def test_start_refuses_an_internal_url_without_a_public_one() -> None:
    with pytest.raises(SettingsError, match="OWNLLM_NATS_PUBLIC_URL is required"):
        load_settings({"OWNLLM_NATS_URL": "nats://nats-1.internal:4222"})
    assert load_settings({"OWNLLM_NATS_URL": "nats://10.0.0.2:4222", "OWNLLM_NATS_PUBLIC_URL": PUBLIC_NATS})
    assert load_settings({"OWNLLM_NATS_URL": "nats://127.0.0.1:4222"})


@pytest.mark.parametrize("url", ["nats://nats.example.com:4222", "ws://nats.example.com:80"])
def test_start_refuses_a_plaintext_public_url(url: str) -> None:
    with pytest.raises(SettingsError, match="not TLS"):
        load_settings({"OWNLLM_NATS_PUBLIC_URL": url})


@pytest.mark.parametrize("url", ["tls://nats.example.com:4222", "wss://nats.example.com", "nats://localhost:4222"])
def test_start_accepts_tls_or_loopback_public_urls(url: str) -> None:
    assert load_settings({"OWNLLM_NATS_PUBLIC_URL": url}).nats_public_url == url
