"""Relay overhead of ``ownllm-agent --backend openai``: the whole path against calling the upstream directly.

A deterministic fast OpenAI-compatible upstream (no model: 16 fixed tokens, uvicorn in its own
process) serves three kinds of clients in the same run, at each concurrency level:

- ``direct``: the client calls the upstream itself (the baseline);
- ``agent``: the client speaks the wire protocol over NATS to a relay agent (Worker + the openai
  backend) that calls the upstream: what the agent alone adds;
- ``serve``: client -> the real ``ownllm serve`` (SQLite, embedded NATS, usage recorded) -> NATS ->
  the real ``ownllm-agent serve --backend openai`` CLI -> upstream: the whole path.

Non-streaming cells run the upstream at full speed; streaming cells pace it at 5 ms per token so
gaps are a generation's. The relay agents' own CPU time per request is printed (from /proc).
With ``--rounds N`` every cell runs N times, the paths taking turns within each round, and each row
pools its rounds' samples: a shared machine's slow spells then fall on every path alike. A ``serve``
or ``base`` cell waits until its tenant's last minute leaves room under the plan's 20,000 requests.
With ``--pin`` (default when there are 2+ cores) ``ownllm serve`` gets the first core, the agent the
second, the upstream the third and the rest (nats-servers, the serve's projector, the clients) the
fourth if there are any (else they share the agent's core).

Each streamed token carries the upstream's send time, so besides the gap p99 next to the direct
path's (``added gap p99``) the table gives ``relay gap p99``: per pair of tokens, the gap the client
saw minus the gap the upstream sent (what the path itself added, whatever the upstream's pacing did).

    PYTHONPATH=. python bench/upstream.py [--seconds 1] [--concurrency 1,16,64] [--no-pin] [--paths serve]
                                          [--modes stream] [--baseline-tree DIR] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.proxy  # noqa: E402
from api.proxy.limits import SlidingWindow  # noqa: E402
from bench.proxy import (  # noqa: E402
    KEY,
    TENANT,
    Composition,
    DirectClient,
    RawHTTP,
    Samples,
    _terms,
    free_port,
    pct,
    run_cell,
    wait_port,
)
from policies.limits import limits_for  # noqa: E402

TOKENS = [f" t{i}" for i in range(16)]


def cpu_seconds_ns(pid: int) -> float:
    """On-CPU time of all a process's threads, from /proc/PID/task/*/schedstat (ns, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that just ended
            continue
    return total / 1e9


bench.proxy.cpu_seconds = cpu_seconds_ns  # run_cell measures the agents with it
STREAM_PACE_S = 0.005
TARGETS = "targets: added p50 <= 1.5 ms at 1 client, added inter-chunk p99 <= 1 ms, >= 1,500 req/s at 16 clients"


# ---------------------------------------------------------------- child processes


def serve_upstream(config: dict[str, Any]) -> None:
    """Child: the fast upstream, a raw ASGI app (16 fixed tokens; ``POST /_pace`` sets the stream pace)."""
    import uvicorn

    state = {"pace": 0.0}
    models = json.dumps({"object": "list", "data": [{"id": "echo", "object": "model", "max_model_len": 4096}]})
    text = "".join(TOKENS)
    usage = {"prompt_tokens": 16, "completion_tokens": len(TOKENS), "total_tokens": 16 + len(TOKENS)}
    whole = json.dumps({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 0, "model": "echo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    }).encode()  # fmt: skip

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        body = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 0, "model": "echo",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    role = chunk({"role": "assistant", "content": ""})
    tail = chunk({}, "stop")
    usage_event = b"data: " + json.dumps({"id": "chatcmpl-up", "choices": [], "usage": usage}).encode() + b"\n\n"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            await _send(send, models.encode())
            return
        if scope["path"] == "/_pace":
            state["pace"] = float(body)
            await _send(send, b"{}")
            return
        request = msgspec.json.decode(body)
        if not request.get("stream"):
            await _send(send, whole)
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for token in ("", *TOKENS):  # the role first; each token stamped with its send time (bench.proxy.StampedGaps)
            if state["pace"]:
                await asyncio.sleep(state["pace"])
            event = chunk({"content": f"{token}@{time.monotonic_ns()}"}) if token else role
            await send({"type": "http.response.body", "body": event, "more_body": True})
        last = tail + (usage_event if (request.get("stream_options") or {}).get("include_usage") else b"")
        await send({"type": "http.response.body", "body": last + b"data: [DONE]\n\n"})

    uvicorn.run(app, host="127.0.0.1", port=int(config["port"]), log_level="warning", access_log=False, lifespan="off")


async def _send(send: Any, raw: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def serve_relay(config: dict[str, Any]) -> None:
    """Child: a relay agent (Worker + the openai backend) of the bench tenant on the bare NATS rig."""
    from agent.backends.openai_upstream import OpenAIUpstreamBackend
    from agent.backends.upstream_config import UpstreamConfig
    from agent.cli import run_loop
    from agent.worker import Worker, WorkerConfig

    async def main() -> None:
        backend = OpenAIUpstreamBackend(UpstreamConfig(url=config.pop("upstream_url"), capacity=64))
        worker = Worker(backend, WorkerConfig(**config))
        await worker.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    run_loop(main())  # the loop ownllm-agent serve runs


# ---------------------------------------------------------------- orchestration


def spawn(args: list[str], core: int | None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A child process, pinned to ``core`` when given."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    pin = ["taskset", "-c", str(core)] if core is not None else []
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    return subprocess.Popen([*pin, *args], env=full_env, stdout=subprocess.PIPE, text=True)


def cores(pin: bool) -> dict[str, int | None]:
    """Which core each part runs on (``None``: not pinned)."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2:
        return dict.fromkeys(("proxy", "agent", "upstream", "rest"), None)
    c = available
    if len(c) >= 4:
        return {"proxy": c[0], "agent": c[1], "upstream": c[2], "rest": c[3]}
    if len(c) == 3:
        return {"proxy": c[0], "agent": c[1], "upstream": c[2], "rest": c[2]}
    return {"proxy": c[0], "agent": c[1], "upstream": c[1], "rest": c[1]}


def relay_cli(
    composition: Composition,
    upstream: str,
    core: int | None,
    tmp: Path,
    keys: int,
    name: str = "relay",
    tree: Path | None = None,
) -> tuple[Any, list[str]]:
    """Sign up a tenant on ``ownllm serve``, issue keys, pair the real agent CLI with --backend openai
    (from ``tree``'s sources when given)."""
    import httpx

    from agent import credentials as creds

    base = composition.base
    slug = f"bench-{uuid4().hex[:8]}"
    signup = httpx.post(base + "/api/v1/tenants", json={"slug": slug, "name": "Bench", "admin_name": "Bench",
                        "admin_email": f"admin@{slug}.example", "accept_terms": _terms()}, timeout=30)  # fmt: skip
    signup.raise_for_status()
    admin = {"Authorization": f"Bearer {signup.json()['api_key']['secret']}"}
    ack = {"model": "echo", "acknowledge_unlisted": True}  # the admin accepts the relayed model's licence
    httpx.post(base + "/api/v1/licences", headers=admin, json=ack, timeout=30).raise_for_status()
    secrets = []
    for i in range(keys):
        issued = httpx.post(base + "/api/v1/keys/", headers=admin, json={"name": f"c{i}", "scopes": ["inference"]})
        issued.raise_for_status()
        secrets.append(issued.json()["secret"])
    pairing = httpx.post(base + "/api/v1/pairing-keys/", headers=admin, timeout=30)
    paired = httpx.post(base + "/api/v1/agents/pair", json={"pairing_key": pairing.json()["secret"]}, timeout=30)
    paired.raise_for_status()
    fields = paired.json()
    stored = creds.Credentials(*(fields[k] for k in creds.Credentials.__struct_fields__))
    path = creds.save(stored, tmp / f"{name}.json")
    cli = str(Path(sys.executable).parent / "ownllm-agent")
    agent = spawn(
        [cli, "serve", "--backend", "openai", "--upstream-url", upstream, "--credentials", str(path),
         "--capacity", "64", "--queue-limit", "256", "--heartbeat-interval", "1"],
        core, {"OWNLLM_AGENT_LOG_LEVEL": "WARNING", **({"PYTHONPATH": str(tree)} if tree else {})},
    )  # fmt: skip
    composition._wait_for_model(secrets[0])
    return agent, secrets


async def bench(
    seconds: float,
    levels: list[int],
    pin: bool,
    paths: set[str],
    baseline: Path | None,
    modes: tuple[bool, ...],
    rounds: int = 1,
) -> None:
    import httpx

    from api.embedded_nats import EmbeddedNats
    from api.nats_auth import AgentAccount, hash_password
    from api.settings import Settings

    where = cores(pin)
    if where["rest"] is not None:
        os.sched_setaffinity(0, {where["rest"]})
    tmp = Path(tempfile.mkdtemp(prefix="ownllm-bench-upstream-"))
    port = free_port()
    upstream = spawn([sys.executable, __file__, "--serve-upstream", json.dumps({"port": port})], where["upstream"])
    children: list[subprocess.Popen[str]] = [upstream]
    wait_port(port)
    base = f"http://127.0.0.1:{port}/v1"
    embedded = EmbeddedNats(Settings(var_dir=str(tmp / "nats"))).start()
    if where["rest"] is not None and embedded.proc is not None:
        os.sched_setaffinity(embedded.proc.pid, {where["rest"]})
    rest = where["rest"] or 0  # the serve's nats-server and projector, when pinned: off the agent's core
    composition = Composition("sqlite", pin, "", children_core=rest)
    base_composition = Composition("sqlite", pin, "", baseline, rest) if baseline is not None else None
    results: dict[tuple[str, bool, int], Samples] = {}
    keys_needed = 2 * sum(levels) * rounds  # fresh keys each round: no key nears its plan's rate limit

    def pool(path: str, stream: bool, level: int, samples: Samples) -> None:
        results[(path, stream, level)] = results.pop((path, stream, level), Samples()).add(samples)

    try:
        agent_id = str(uuid4())
        embedded.authorization.sync([AgentAccount(agent_id, TENANT, "bench-relay", hash_password("pw", 4))])
        nats_config = {"agent_id": agent_id, "tenant_id": TENANT, "nats_url": embedded.url,
                       "nats_user": "bench-relay", "nats_password": "pw", "queue_limit": 256}  # fmt: skip
        nc = await _proxy_nats(embedded)
        direct_nats = DirectClient(nc)
        await direct_nats.start()
        composition.start()
        serve_agent, secrets = relay_cli(composition, base, where["agent"], tmp, keys_needed)
        children.append(serve_agent)
        keys = iter(secrets)
        base_keys: Any = iter(())
        if base_composition is not None:  # the baseline tree's `ownllm serve` and relay agent
            base_composition.start()
            base_agent, base_secrets = relay_cli(
                base_composition, base, where["agent"], tmp, keys_needed, "relay-base", baseline
            )
            children.append(base_agent)
            base_keys = iter(base_secrets)

        async def make_upstream_client(stream: bool) -> Any:
            client = RawHTTP(port, stream, KEY)
            await client.connect()
            return client.one

        async def make_serve_client(stream: bool) -> Any:
            client = RawHTTP(composition.port, stream, next(keys, KEY))
            await client.connect()
            return client.one

        async def make_base_client(stream: bool) -> Any:
            assert base_composition is not None
            client = RawHTTP(base_composition.port, stream, next(base_keys, KEY))
            await client.connect()
            return client.one

        async def make_agent_client() -> Any:
            return direct_nats.one

        serve_minute, base_minute = TenantMinute(), TenantMinute()
        for stream in modes:
            pace = STREAM_PACE_S if stream else 0.0
            httpx.post(f"http://127.0.0.1:{port}/_pace", content=str(pace))
            if "echo" in paths:  # the same worker with the echo backend (no HTTP): what a local engine costs
                echo_config = {**nats_config, "backend": "echo", "token_delay_s": pace}
                echo = bare_agent([str(ROOT / "bench" / "proxy.py"), "--serve-agent"], echo_config, where["agent"])
                for level in levels:
                    for _ in range(rounds):
                        pool("echo", stream, level, await run_cell(make_agent_client, level, seconds, stream, echo.pid))
                stop(echo)
            relay = bare_agent([__file__, "--serve-relay"], {**nats_config, "upstream_url": base}, where["agent"])
            for level in levels:
                for _ in range(rounds):
                    pool("direct", stream, level, await run_cell(  # always: the baseline of "added"
                        lambda s=stream: make_upstream_client(s), level, seconds, stream
                    ))  # fmt: skip
                    if "agent" in paths:
                        pool("agent", stream, level, await run_cell(
                            make_agent_client, level, seconds, stream, relay.pid
                        ))  # fmt: skip
                    if "serve" in paths:
                        await serve_minute.room((stream, level))
                        pool("serve", stream, level, serve_minute.sent((stream, level), await run_cell(
                            lambda s=stream: make_serve_client(s), level, seconds, stream, serve_agent.pid,
                            proxy_pid=composition.server_pid(),
                        )))  # fmt: skip
                    if base_composition is not None:
                        await base_minute.room((stream, level))
                        pool("base", stream, level, base_minute.sent((stream, level), await run_cell(
                            lambda s=stream: make_base_client(s), level, seconds, stream, base_agent.pid,
                            proxy_pid=base_composition.server_pid(),
                        )))  # fmt: skip
            stop(relay)
        await nc.close()
    finally:
        for child in reversed(children):  # the agents before what they connect to
            if child.poll() is None:
                child.terminate()
                child.wait(10)
        composition.stop()
        if base_composition is not None:
            base_composition.stop()
        embedded.stop()
    print_tables(results, levels, where, rounds)


class TenantMinute:
    """What one bench tenant sent in the last minute (the proxy's own sliding window), so that a cell starts only
    when the enterprise plan's requests a minute per tenant have room for it (a fast machine passes them)."""

    def __init__(self) -> None:
        per_tenant = limits_for("enterprise").per_tenant.requests_per_minute
        self.window = SlidingWindow(per_tenant * 9 // 10)  # a margin: a faster repeat of a cell fits beneath
        self.last: dict[tuple[bool, int], int] = {}  # requests the last run of each (stream, clients) sent

    async def room(self, cell: tuple[bool, int]) -> None:
        """Wait until the last minute's requests and this cell's expected ones fit under the limit."""
        expected = min(self.last.get(cell, 0), self.window.limit)
        while (wait := self.window.retry_after(time.monotonic(), expected)) > 0:
            await asyncio.sleep(wait)

    def sent(self, cell: tuple[bool, int], samples: Samples) -> Samples:
        """Count a cell that just ended (its warm-up and refusals included); returns its samples."""
        requests = samples.warmup + samples.requests + samples.errors
        self.window.add(time.monotonic(), requests)
        self.last[cell] = requests
        return samples


def bare_agent(args: list[str], config: dict[str, Any], core: int | None) -> subprocess.Popen[str]:
    """An agent process on the bare NATS rig (bench tenant), once it serves."""
    agent = spawn([sys.executable, *args, json.dumps(config)], core)
    assert agent.stdout is not None
    if agent.stdout.readline().strip() != "ready":
        raise RuntimeError(f"agent {args[-1]} did not start")
    return agent


def stop(child: subprocess.Popen[str]) -> None:
    """Terminate a child and wait for it."""
    child.terminate()
    child.wait(10)


async def _proxy_nats(embedded: Any) -> Any:
    import nats

    async def retried(exc: Exception) -> None:
        """The server may still be reloading the login just written (nats-py retries): that one is expected."""
        if not isinstance(exc, ConnectionResetError) and "Authorization Violation" not in str(exc):
            print(f"bench NATS client: {type(exc).__name__}: {exc}", file=sys.stderr)

    user, password = embedded.settings.nats_proxy_user, embedded.password
    return await nats.connect(embedded.url, user=user, password=password, error_cb=retried)


def print_tables(
    results: dict[tuple[str, bool, int], Samples], levels: list[int], where: dict[str, int | None], rounds: int
) -> None:
    """One table per mode: each path's latency next to the direct upstream's, req/s, the agent's CPU per request."""
    placed = ", ".join(f"{k} core {v}" for k, v in where.items()) if where["agent"] is not None else "not pinned"
    print(f"\nopenai backend relay overhead ({os.cpu_count()} cores; {placed}; shared machine: see the note)")
    print(
        f"{'mode':<9}{'path':<7}{'clients':>8} | {'p50':>7}{'p99':>8}{'added p50':>10} | {'req/s':>7} | "
        f"{'ttft p50':>8}{'gap p50':>8}{'gap p99':>8}{'added gap p99':>14}{'relay gap p99':>14} | "
        f"{'agent CPU ms/req':>16} | "
        f"{'proxy CPU ms/req':>16} | {'errors':>6}"
    )
    for stream in (False, True):
        for level in levels:
            if ("direct", stream, level) not in results:
                continue
            base = results[("direct", stream, level)]
            for path in ("direct", "echo", "agent", "serve", "base"):
                if (path, stream, level) not in results:
                    continue
                s = results[(path, stream, level)]
                relayed = path in ("agent", "serve", "base")  # "added" compares paths that reach the upstream
                added = pct(s.total, 0.5) - pct(base.total, 0.5) if relayed else float("nan")
                added_gap = pct(s.gaps, 0.99) - pct(base.gaps, 0.99) if relayed and stream else float("nan")
                cpu = s.cpu_s * 1000 / max(1, s.requests) if path != "direct" else float("nan")
                proxy_cpu = s.proxy_cpu_s * 1000 / max(1, s.requests) if path in ("serve", "base") else float("nan")
                answered = (s.requests - s.errors) / max(s.elapsed, 1e-9)
                print(
                    f"{'stream' if stream else 'whole':<9}{path:<7}{level:>8} | {pct(s.total, 0.5):>7.2f}"
                    f"{pct(s.total, 0.99):>8.2f}{added:>10.2f} | {answered:>7.0f} | "
                    f"{pct(s.ttft, 0.5):>8.2f}{pct(s.gaps, 0.5):>8.2f}{pct(s.gaps, 0.99):>8.2f}{added_gap:>14.2f}"
                    f"{pct(s.relay_gaps, 0.99) if stream else float('nan'):>14.2f} | "
                    f"{cpu:>16.3f} | {proxy_cpu:>16.3f} | {s.errors:>6}"
                )
    print("times in ms; direct = client -> upstream; echo = client -> NATS -> the same worker on the echo backend")
    print("(no upstream: a local engine's share); agent = client -> NATS -> relay agent -> upstream;")
    print("serve = client -> `ownllm serve` (SQLite, usage recorded) -> NATS -> `ownllm-agent --backend openai`")
    print("        -> upstream: the whole path")
    print("added = that path minus direct at the same percentile and clients; gap = time between content chunks")
    print("relay gap = per pair of tokens, the gap the client saw minus the gap between the upstream's sends of")
    print("        them (each token carries its send time): what the path itself added to that gap")
    print(f"streaming cells: the upstream paces tokens at {STREAM_PACE_S * 1000:.0f} ms; non-streaming at full speed")
    print("base = the same as serve, `ownllm serve` and the agent run from the --baseline-tree (same run, alternated)")
    if rounds > 1:
        print(f"each row pools {rounds} rounds of its cell (the paths took turns in each round)")
    print("agent CPU ms/req = the relay agent process's on-CPU time (schedstat, all threads) / requests served")
    print("proxy CPU ms/req = the `ownllm serve` process's on-CPU time (all threads: usage writer included) / requests")
    if any(s.errors for s in results.values()):
        print("errors = answers other than 200, not counted in req/s: the enterprise plan allows 3,000 requests a")
        print("        minute per key (a whole cell at 1 client passes it after about 6 s: keep --seconds <= 3);")
        print("        the tenant's 20,000 a minute is waited for between cells (a single cell may still pass it)")
    print(TARGETS + " (printed, not asserted)")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-upstream":
        serve_upstream(json.loads(sys.argv[2]))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-relay":
        serve_relay(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--no-pin", action="store_true", help="leave every process unpinned")
    parser.add_argument("--paths", default="echo,agent,serve", help="which of echo,agent,serve to run (direct always)")
    parser.add_argument("--modes", default="whole,stream", help="which of whole,stream to run (comma-separated)")
    parser.add_argument("--rounds", type=int, default=1, help="run each cell this many times, pooled")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="another source tree (e.g. `git archive REV | tar -x -C DIR`): its `ownllm serve` as the `base` path",
    )
    args = parser.parse_args()
    levels = [int(n) for n in args.concurrency.split(",")]
    paths = set(args.paths.split(","))
    unknown = set(args.modes.split(",")) - {"whole", "stream"}
    if unknown:
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))} (whole, stream)")
    modes = tuple(mode == "stream" for mode in args.modes.split(","))
    asyncio.run(bench(args.seconds, levels, not args.no_pin, paths, args.baseline_tree, modes, max(1, args.rounds)))


if __name__ == "__main__":
    main()
