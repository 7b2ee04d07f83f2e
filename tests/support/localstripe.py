"""localstripe (a GPLv3 Stripe fake, dev extra only) started by the tests on a free loopback port."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
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
def localstripe(start_timeout_s: float = 30.0, attempts: int = 3) -> Iterator[str]:
    """Run localstripe for the block; yields its base URL (``stripe_api_base``).

    The port is chosen free on both stacks (it binds ``::``), then bound by localstripe: another
    process may take it in between, and localstripe then exits; another port is tried. A failure names
    the reason (its exit status and the last lines it wrote, or the wait).
    """
    reasons: list[str] = []
    for _ in range(attempts):
        started = _start(start_timeout_s)
        if isinstance(started, str):
            reasons.append(started)
            continue
        process, base = started
        try:
            yield base
        finally:
            process.terminate()
            process.wait(10)
        return
    raise RuntimeError("localstripe did not start: " + "; ".join(reasons))


def _start(timeout_s: float) -> tuple[subprocess.Popen[bytes], str] | str:
    """localstripe answering on a free port, or why it does not."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as errors:  # the child keeps its own handle
        # --from-scratch: not the state another run left in /tmp/localstripe.pickle (which every localstripe
        # rewrites at each change: one read while another writes it crashes at start)
        process = subprocess.Popen([localstripe_binary(), "--port", str(port), "--from-scratch"],
                                   stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                httpx.get(f"{base}/v1/customers", auth=("sk_test_probe", ""), timeout=1.0)
                return process, base
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        process.terminate()
        process.wait(10)
        errors.seek(0)
        tail = errors.read().decode(errors="replace").strip().splitlines()[-3:]
    status = f"exit status {process.returncode}" if process.returncode is not None else "no answer"
    return f"port {port}: {status} ({' | '.join(tail) or 'nothing written'})"


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
