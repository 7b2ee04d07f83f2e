"""The signup limiter's parts as properties: token buckets on a manual clock, and who the client is."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from api.client_address import client_address, parse_networks
from api.rate_limit import TokenBuckets, retry_after


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


steps = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.floats(min_value=-5, max_value=600, allow_nan=False)), max_size=200
)


@given(steps, st.integers(1, 5))
def test_no_key_gets_more_than_its_burst_plus_its_refill(sequence: list[tuple[str, float]], burst: int) -> None:
    clock = Clock()
    buckets = TokenBuckets(burst, burst / 3600, max_keys=6, now=clock)  # room for every key: none forgotten
    granted = dict.fromkeys("abcdef", 0)
    forward = 0.0
    for key, dt in sequence:
        clock.t += dt  # the clock may step back: that refills nothing
        forward += max(0.0, dt)
        if buckets.take(key) == 0:
            granted[key] += 1
        assert len(buckets) <= buckets.max_keys
    for count in granted.values():
        assert count <= burst + forward * burst / 3600 + 1e-9


@given(steps, st.integers(1, 3))
def test_the_table_stays_bounded_whatever_the_keys(sequence: list[tuple[str, float]], size: int) -> None:
    clock = Clock()
    buckets = TokenBuckets(2, 1.0, max_keys=size, now=clock)
    for key, dt in sequence:
        clock.t += abs(dt)
        buckets.take(key)
        assert len(buckets) <= size


@given(st.integers(1, 5), st.floats(min_value=0.001, max_value=10))
def test_a_refusal_says_how_long_to_wait_and_that_is_enough(burst: int, per_second: float) -> None:
    clock = Clock()
    buckets = TokenBuckets(burst, per_second, max_keys=1, now=clock)
    for _ in range(burst):
        assert buckets.take("a") == 0
    wait = buckets.take("a")
    assert wait > 0 and retry_after(wait) >= wait
    clock.t += wait * (1 + 1e-9)
    assert buckets.take("a") == 0


ipv4 = st.ip_addresses(v=4).map(str)
trusted_net = parse_networks("10.0.0.0/8, 127.0.0.1")


@given(ipv4, st.lists(ipv4, max_size=5))
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(peer: str, forwarded: list[str]) -> None:
    if ipaddress.ip_address(peer) in ipaddress.ip_network("10.0.0.0/8") or peer == "127.0.0.1":
        return
    assert client_address(peer, [", ".join(forwarded)], trusted_net) == peer


@given(st.lists(st.text(max_size=20) | ipv4, max_size=5), ipv4)
def test_behind_a_trusted_proxy_a_forged_prefix_changes_nothing(forged: list[str], client: str) -> None:
    if ipaddress.ip_address(client) in ipaddress.ip_network("10.0.0.0/8") or client == "127.0.0.1":
        return
    header = ", ".join([*forged, client, "10.1.2.3"]).replace("\n", " ")
    assert client_address("127.0.0.1", [header], trusted_net) == client


def test_ipv6_clients_count_per_64_and_junk_stops_at_the_proxy() -> None:
    trusted = parse_networks("127.0.0.1")
    one = client_address("127.0.0.1", ["2001:db8:1:2::1"], trusted)
    assert one == client_address("127.0.0.1", ["2001:db8:1:2:ffff::9"], trusted) == "2001:db8:1:2::/64"
    assert client_address("2001:db8::1", [], ()) == "2001:db8::/64"
    assert client_address("127.0.0.1", ["not-an-ip"], trusted) == "127.0.0.1"
    assert client_address("::ffff:198.51.100.7", [], ()) == "198.51.100.7"
    assert client_address(None, ["198.51.100.7"], trusted) == "unknown"
