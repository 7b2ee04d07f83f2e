"""Key sharing (terms §3): a key used from more networks than one person uses is reported once, and
suspended when the tenant chose so; one network, however busy, never is."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.embedded_nats import EmbeddedNats
from api.proxy.sharing import SharingDetector, Sighting
from api.services import Services, build_services
from api.settings import Settings
from domain.api_key import ApiKey
from policies.sharing import SharingLimits, network_of
from tests.support.server import ServerThread
from tests.support.terms import TERMS

LIMITS = SharingLimits(max_networks=5, max_user_agents=8)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def detector() -> tuple[SharingDetector, list[Sighting], Clock]:
    reports: list[Sighting] = []
    clock = Clock()
    return SharingDetector(reports.append, LIMITS, clock), reports, clock


def test_networks_are_slash_24_and_slash_48():
    assert network_of("203.0.113.7") == network_of("203.0.113.250") == "203.0.113.0/24"
    assert network_of("203.0.114.7") != network_of("203.0.113.7")
    assert network_of("2001:db8:1:2::1") == network_of("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    assert network_of("testclient") == "" and network_of("1.2.3.256") == ""
    assert network_of("::ffff:203.0.113.7") == "203.0.113.0/24"  # an IPv4 client on a dual-stack socket


@given(hosts=st.lists(st.integers(0, 255), min_size=1, max_size=300), agents=st.integers(1, 8))
def test_one_network_with_a_few_programs_never_triggers(hosts: list[int], agents: int):
    watch, reports, _ = detector()
    key = uuid4()
    for i, host in enumerate(hosts):
        watch.observe(key, f"198.51.100.{host}", f"tool-{i % agents}")
    assert reports == []


@given(
    networks=st.integers(1, 12),
    repeats=st.integers(1, 5),
    order=st.randoms(use_true_random=False),
)
def test_more_networks_than_the_limit_trigger_exactly_once_per_window(networks: int, repeats: int, order: Any):
    watch, reports, clock = detector()
    key = uuid4()
    visits = [n for n in range(networks) for _ in range(repeats)]
    order.shuffle(visits)
    for n in visits:
        watch.observe(key, f"10.{n}.0.1", "sdk")
        clock.now += 1
    assert len(reports) == (1 if networks > LIMITS.max_networks else 0)
    if reports:
        assert reports[0].key_id == key and len(reports[0].networks) == LIMITS.max_networks + 1
    clock.now += LIMITS.window.total_seconds() + 1  # a day later the old sightings are forgotten
    watch.prune()
    assert watch._keys == {} or all(not s.networks for s in watch._keys.values())


def test_a_key_that_keeps_hopping_is_reported_again_only_after_the_window():
    watch, reports, clock = detector()
    key = uuid4()
    for n in range(20):
        watch.observe(key, f"10.{n}.0.1", "sdk")
        clock.now += 60
    assert len(reports) == 1
    clock.now += LIMITS.window.total_seconds()
    for n in range(20, 27):
        watch.observe(key, f"10.{n}.0.1", "sdk")
    assert len(reports) == 2


def test_many_programs_from_one_network_trigger_too():
    watch, reports, _ = detector()
    key = uuid4()
    for n in range(LIMITS.max_user_agents + 1):
        watch.observe(key, "192.0.2.1", f"script-{n}")
    assert len(reports) == 1 and reports[0].user_agents == LIMITS.max_user_agents + 1


@pytest.fixture
def platform(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, Services]]:
    """The real app under uvicorn behind a 'proxy' on loopback that forwards each client's address."""
    nats = EmbeddedNats(make_settings(inference=True, trusted_proxies="127.0.0.1")).start()
    services = build_services(nats.settings_for_proxy())
    server = ServerThread(create_app(services.settings, services)).start()
    try:
        yield server.base_url, services
    finally:
        server.stop()
        services.close()
        nats.stop()


def _chat(base: str, key: str, client_ip: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": client_ip, "User-Agent": "OpenAI/Python"}
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(base + "/v1/chat/completions", headers=headers, json=body, timeout=10)


def _wait(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_a_shared_key_is_suspended_when_the_tenant_chose_so_and_an_admin_reinstates_it(
    platform: tuple[str, Services],
):
    base, services = platform
    body = {"slug": "acme", "name": "Acme", "admin_name": "Ada", "admin_email": "ada@acme.example",
            "accept_terms": TERMS}  # fmt: skip
    signed = httpx.post(base + "/api/v1/tenants", json=body, timeout=10).json()
    admin = {"Authorization": f"Bearer {signed['api_key']['secret']}"}
    ack = {"model": "echo", "acknowledge_unlisted": True}
    assert httpx.post(base + "/api/v1/licences", headers=admin, json=ack).status_code == 201
    policy = {"suspend_shared_keys": True}
    beta = httpx.put(base + "/api/v1/tenant/key-sharing", headers=admin, json=policy)
    assert beta.status_code == 409 and "key-sharing-suspension" in beta.text  # a beta feature: opt in first
    features = {f["name"]: f for f in httpx.get(base + "/api/v1/features", headers=admin).json()}
    assert features["key-sharing-suspension"] == {**features["key-sharing-suspension"], "beta": True, "on": False}
    assert httpx.put(base + "/api/v1/features/key-sharing-suspension", headers=admin, json={"on": True}).is_success
    assert httpx.get(base + "/api/v1/features", headers=admin).json()[0]["on"] is True
    assert httpx.put(base + "/api/v1/features/no-such", headers=admin, json={"on": True}).status_code == 404
    assert httpx.put(base + "/api/v1/tenant/key-sharing", headers=admin, json=policy).status_code == 200
    issued = httpx.post(base + "/api/v1/keys", headers=admin, json={"name": "shared", "scopes": ["inference"]}).json()
    key_id = UUID(issued["id"])

    for n in range(5):  # five offices: no agent serves echo here, so 503, but each request is seen
        assert _chat(base, issued["secret"], f"203.0.{n}.9").status_code == 503
    time.sleep(0.2)
    assert services.directory.keys[key_id].sharing_suspected_at is None
    assert _chat(base, issued["secret"], "203.0.99.9").status_code == 503  # the sixth network
    assert _wait(lambda: services.directory.keys[key_id].suspended)
    refused = _chat(base, issued["secret"], "203.0.0.9")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "key_suspended"
    events = [type(services.app.mapper.to_domain_event(e)) for e in services.app.recorder.select_events(key_id)]
    assert events.count(ApiKey.SharingSuspected) == 1
    listed = {k["id"]: k for k in httpx.get(base + "/api/v1/keys", headers=admin).json()}
    assert listed[str(key_id)]["status"] == "suspended" and listed[str(key_id)]["sharing_suspected_at"]

    assert httpx.post(base + f"/api/v1/keys/{key_id}/reinstate", headers=admin).status_code == 204
    assert _chat(base, issued["secret"], "203.0.0.9").status_code == 503  # works again (no agent)


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_without_the_tenants_choice_a_suspect_key_is_only_reported(platform: tuple[str, Services]):
    base, services = platform
    body = {"slug": "globex", "name": "Globex", "admin_name": "Gil", "admin_email": "gil@globex.example",
            "accept_terms": TERMS}  # fmt: skip
    signed = httpx.post(base + "/api/v1/tenants", json=body, timeout=10).json()
    secret, key_id = signed["api_key"]["secret"], UUID(signed["api_key"]["id"])
    for n in range(7):
        _chat(base, secret, f"198.51.{n}.1")
    assert _wait(lambda: services.directory.keys[key_id].sharing_suspected_at is not None)
    assert not services.directory.keys[key_id].suspended
    assert _chat(base, secret, "198.51.0.1").status_code == 404  # still served (nothing knows echo here)


@settings(max_examples=1)
@given(st.just(None))
def test_the_detector_holds_no_more_than_the_limit_plus_one_per_key(_: None):
    watch, _, _ = detector()
    key = uuid4()
    for n in range(1000):
        watch.observe(key, f"10.{n % 250}.{n // 250}.1", f"ua-{n}")
    seen = watch._keys[key]
    assert len(seen.networks) <= LIMITS.max_networks + 1 and len(seen.agents) <= LIMITS.max_user_agents + 1
