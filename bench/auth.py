"""API-key authentication cost per request: ``KeyAuthenticator.authenticate`` on a directory holding a few
thousand keys, against a bare HMAC-SHA256 (its floor) and scrypt (what a KDF per request would cost),
then the whole HTTP path ``GET /api/v1/me`` against ``GET /health`` on a real uvicorn on loopback.

Self-contained: SQLite store in a temp var dir (authentication reads only the in-memory directory),
server in its own process, one keep-alive httpx client. Prints a markdown table; asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/auth.py [--calls 100000] [--keys 3000] [--http 3000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from api.services import Services, build_services  # noqa: E402
from api.settings import Settings, load_settings  # noqa: E402
from domain.context import Ctx  # noqa: E402

KEYS_PER_TENANT = 100
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
TARGET_P50_US = 200.0


@dataclass
class Timing:
    """Latencies of one measured thing, in seconds."""

    label: str
    samples: list[float]

    def pct(self, q: float) -> float:
        """The q-th percentile in microseconds."""
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1e6

    @property
    def mean_us(self) -> float:
        """The mean in microseconds."""
        return statistics.fmean(self.samples) * 1e6


def timed(label: str, fn: Callable[[str], object], inputs: list[str]) -> Timing:
    """Call ``fn`` once per input, timing each call on its own."""
    clock = time.perf_counter
    samples = []
    for value in inputs:
        start = clock()
        fn(value)
        samples.append(clock() - start)
    return Timing(label, samples)


def settings_for(var: str) -> Settings:
    """Embedded settings (SQLite) in the temp var dir, no inference path."""
    return load_settings({}, var_dir=var, inference=False)


def populate(services: Services, keys: int) -> list[str]:
    """Sign up tenants and issue ``keys`` API keys in all; the directory projects them. Returns the secrets."""
    app = services.app
    secrets: list[str] = []
    for tenant in range(max(1, keys // KEYS_PER_TENANT)):
        done = app.signup(slug=f"bench-{tenant}", name=f"Bench {tenant}", admin_name="Admin",
                          admin_email=f"admin{tenant}@example.com", request_id=f"signup-{tenant}")  # fmt: skip
        secrets.append(done.admin_key.secret)
        ctx = Ctx(actor=f"user:{done.admin_user_id}", tenant_id=done.tenant_id, request_id="bench")
        for _ in range(KEYS_PER_TENANT - 1):
            issued = app.issue_api_key(
                ctx, user_id=done.admin_user_id, name="bench key", scopes=["inference", "admin:read"]
            )
            secrets.append(issued.secret)
    services.runner.catch_up()
    return secrets


def in_process(services: Services, secrets: list[str], calls: int) -> list[Timing]:
    """authenticate(), its bare HMAC floor, scrypt, and the timer's own floor."""
    inputs = [random.choice(secrets) for _ in range(calls)]
    pepper = services.authenticator.pepper
    authenticate = services.authenticator.authenticate
    for value in inputs[:1000]:  # warm-up
        authenticate(value)
    return [
        timed("timer floor (empty call)", lambda _: None, inputs),
        timed("bare hmac.new(pepper, secret, sha256).hexdigest()", lambda s: _hmac(pepper, s), inputs),
        timed(f"KeyAuthenticator.authenticate ({len(services.directory.keys_by_hash):,} keys)", authenticate, inputs),
        timed("scrypt n=2**14 r=8 p=1 (a KDF per request)", lambda s: _scrypt(pepper, s), inputs[:30]),
    ]


def _hmac(pepper: bytes, secret: str) -> str:
    """The keyed hash alone."""
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def _scrypt(pepper: bytes, secret: str) -> bytes:
    """What a memory-hard KDF costs per request (argon2 is not installed here; scrypt is in hashlib)."""
    return hashlib.scrypt(secret.encode(), salt=pepper, maxmem=64 * 2**20, **SCRYPT)


# ---------------------------------------------------------------- HTTP on a real server


def serve(var: str, port: int) -> None:
    """Child: the fully wired app (auth, guards, controllers) under uvicorn on loopback."""
    import uvicorn

    from api.app import create_app

    settings = settings_for(var)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(client: httpx.Client, timeout_s: float = 60.0) -> None:
    """Wait until the server answers /health."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the server did not come up")


def over_http(var: str, secrets: list[str], requests: int) -> list[Timing]:
    """GET /health (no auth) and GET /api/v1/me (auth + directory) in alternating blocks, one client."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, __file__, "--serve", var, str(port)], env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            wait_healthy(client)
            health: list[float] = []
            me: list[float] = []
            for block in range(10):
                keys = [random.choice(secrets) for _ in range(requests // 10)]
                health += timed("", lambda _: _get(client, "/health", None), keys).samples
                me += timed("", lambda s: _get(client, "/api/v1/me", s), keys).samples
                if block == 0:
                    health, me = [], []  # warm-up block
        return [Timing("HTTP GET /health (no auth)", health), Timing("HTTP GET /api/v1/me (Bearer key)", me)]
    finally:
        server.terminate()
        server.wait(10)


def _get(client: httpx.Client, path: str, secret: str | None) -> None:
    """One request; anything but 200 is a broken benchmark."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    response = client.get(path, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")


def print_table(timings: list[Timing], http: list[Timing]) -> None:
    """The markdown table, the HTTP difference, and the target."""
    hmac_floor, auth = timings[1], timings[2]
    print(f"\nAPI-key authentication, {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("| what | calls | p50 us | p99 us | mean us | x bare HMAC (p50) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for timing in [*timings, *http]:
        print(f"| {timing.label} | {len(timing.samples):,} | {timing.pct(50):,.1f} | {timing.pct(99):,.1f} "
              f"| {timing.mean_us:,.1f} | {timing.pct(50) / hmac_floor.pct(50):,.1f} |")  # fmt: skip
    health, me = http
    print(f"\nHTTP: /me minus /health at p50 = {me.pct(50) - health.pct(50):.0f} us (auth guard + directory "
          "reads + the /me body); one keep-alive client, server in its own process")  # fmt: skip
    verdict = "ok" if auth.pct(50) <= TARGET_P50_US else "MISSED"
    print(f"target: authenticate p50 ≤ {TARGET_P50_US:.0f} us (hot path, no KDF): {auth.pct(50):.1f} us {verdict}")


def main() -> None:
    """Populate a throwaway store, measure in process, then over HTTP, print the table."""
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="authenticate() calls")
    parser.add_argument("--keys", type=int, default=3_000, help="API keys in the directory")
    parser.add_argument("--http", type=int, default=3_000, help="HTTP requests per endpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ownllm-bench-auth-") as var:
        services = build_services(settings_for(var), start_runner=False)
        try:
            secrets = populate(services, args.keys)
            timings = in_process(services, secrets, args.calls)
        finally:
            services.close()
        http = over_http(var, secrets, args.http)
    print_table(timings, http)


if __name__ == "__main__":
    main()
