"""localstripe (a GPLv3 Stripe fake, dev extra only) started by the tests on a free loopback port."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.nats import free_port


def localstripe_binary() -> str:
    """The ``localstripe`` script installed beside this interpreter (``make install``'s dev extra)."""
    path = Path(sys.executable).parent / "localstripe"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install the dev extra (pip install -e '.[dev]')")
    return str(path)


@contextlib.contextmanager
def localstripe(start_timeout_s: float = 20.0) -> Iterator[str]:
    """Run localstripe for the block; yields its base URL (``stripe_api_base``)."""
    port = free_port()
    process = subprocess.Popen(
        [localstripe_binary(), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                httpx.get(f"{base}/v1/customers", auth=("sk_test_probe", ""), timeout=1.0)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def send_webhooks_to(base: str, url: str, secret: str) -> None:
    """Have localstripe deliver its webhooks (signed with ``secret``) to ``url``."""
    response = httpx.post(f"{base}/_config/webhooks/ownllm", data={"url": url, "secret": secret}, timeout=5.0)
    response.raise_for_status()


def wait_until(condition: object, timeout_s: float = 60.0) -> None:
    """Poll ``condition()`` until true (webhooks arrive asynchronously); no fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.05)
