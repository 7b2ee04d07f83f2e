"""``openai``: relay jobs to a local OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, TabbyAPI).

The agent still only connects out (to NATS and to the upstream on this machine or its private
network); no port is opened. Every job is one streaming request upstream with
``stream_options.include_usage``: each upstream event is relayed as soon as it is read (events
that arrived together go out as one chunk; nothing waits for more), and the token counts are the
upstream's. A server that reports no usage gets counts
estimated as described in :func:`agent.backends.upstream_wire.estimate_prompt_tokens` (completion:
one token per text event), marked ``estimated``. A cancel closes the upstream connection, which
vLLM and llama.cpp take as an abort. ``GET /v1/models`` is polled: models appear and disappear with
the upstream, and an upstream that stops answering leaves the agent announcing none. Unless a
capacity is set, each time the upstream comes up the agent takes the capacity it reports
(:mod:`agent.backends.upstream_capacity`).

Every request upstream (jobs, model polls from the first listing on, the doctor's) goes through
aiohttp (a quarter of httpx's CPU per streamed request, measured with bench/upstream.py's upstream),
each new connection to a host name checked again (:mod:`agent.backends.upstream_http`).

Nothing from a request or response body is logged, upstream error bodies included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp

from agent.backends.base import Event, Finished, GenerationRequest, RequestError
from agent.backends.upstream_capacity import DEFAULT_CAPACITY, capacity_or_default
from agent.backends.upstream_config import UpstreamConfig
from agent.backends.upstream_http import CheckedResolver, bounded_body, fetch_listing, upstream_session
from agent.backends.upstream_models import BACKEND_NAME, ListingError, announced, describe, parse_listing
from agent.backends.upstream_stream import Relay
from agent.backends.upstream_wire import estimate_prompt_tokens, refusal, request_body
from agent.protocol import ModelInfo

log = logging.getLogger("ownllm.agent.upstream")
MAX_ERROR_BODY = 64 * 1024
MAX_CHARS_PER_CHUNK_TOKEN = 256
MAX_EARLY_CANCELS = 4096
MAX_DELTA_CHARS = 16 * 1024  # one chunk of coalesced events, well under NATS's payload limit
MAX_LINE_BYTES = 1024 * 1024  # the proxy's bound on text per counted token
_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
Routes = dict[str, tuple[str, ModelInfo]]


class OpenAIUpstreamBackend:
    """Relays jobs to an OpenAI-compatible server; models follow its ``/v1/models``."""

    name = BACKEND_NAME
    exact_prompt_counts = False  # count_prompt_tokens estimates: the upstream's tokenizer is not here

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.capacity = max(1, config.capacity or DEFAULT_CAPACITY)  # unset: the upstream's, once it answers
        self._routes: Routes = {}
        self._healthy: bool | None = None  # unknown until the first listing
        self._session: aiohttp.ClientSession | None = None
        self._poller: aiohttp.ClientSession | None = None
        self._resolver: CheckedResolver | None = None
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._reading: set[str] = set()
        self._cancelled: dict[str, None] = {}  # job ids, oldest first
        self._poll_now = asyncio.Event()
        self._last_read = float("-inf")  # when a job's stream last brought bytes (monotonic)

    # -- models and health ---------------------------------------------------------------------

    def load(self) -> None:
        """Nothing to load: the first listing is the worker's ``refresh``, in its loop and through the
        resolver that checks the host (a listing here would resolve it outside that check)."""

    def models(self) -> list[ModelInfo]:
        """The models the upstream serves now (none while it does not answer)."""
        return [info for _, info in self._routes.values()]

    async def monitor(self, changed: Callable[[], None]) -> None:
        """After the first listing, poll ``/v1/models`` every interval (at once after a failed connection);
        report changes."""
        while True:
            self._poll_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), self.config.poll_interval_s)
            if await self.refresh():
                changed()

    async def refresh(self) -> bool:
        """Ask ``/v1/models`` now; whether the announced models changed."""
        if self._poller is None or self._poller.closed:
            limits = aiohttp.ClientTimeout(total=self._poll_s(), connect=self.config.connect_timeout_s)
            # A new connection per poll: every few seconds the host is checked again, even with no jobs.
            self._poller = upstream_session(self.config, self._checked(), 1, limits, decompress=True, fresh=True)
        was_healthy = self._healthy
        try:
            status, body = await fetch_listing(self._poller, self.config)
        except ListingError as exc:
            return self._apply(None, b"", str(exc))
        except TimeoutError as exc:
            if self._streaming():  # busy, not gone: llama-cpp-python serves /v1/models between generations only
                return False
            return self._apply(None, b"", type(exc).__name__)
        except aiohttp.ClientError as exc:
            return self._apply(None, b"", type(exc).__name__)
        changed = self._apply(status, body)
        if self._healthy and not was_healthy and self.config.capacity is None:  # it (re)started: ask again
            changed = await self._ask_capacity() or changed
        return changed

    async def _ask_capacity(self) -> bool:
        """Take the capacity the upstream reports (else the default); whether it changed."""
        assert self._poller is not None
        capacity, source = await capacity_or_default(self._poller, self.config)
        if capacity == self.capacity:
            return False
        log.info("upstream capacity %d (%s)", capacity, source or "not reported: the default")
        self.capacity = capacity
        return True

    def _streaming(self) -> bool:
        """Whether a job's stream brought bytes within the last poll timeout: the upstream answers."""
        return time.monotonic() - self._last_read < self._poll_s()

    def _poll_s(self) -> float:
        """A poll waits at most the poll interval (1-5 s): a hung upstream counts as down."""
        return min(5.0, max(1.0, self.config.poll_interval_s))

    def _apply(self, status: int | None, body: bytes, failure: str | None = None) -> bool:
        """Take a poll's outcome; whether the announced models changed."""
        routes: Routes = {}
        if status == 200:
            try:
                routes = announced(self.config, parse_listing(body))
            except ListingError as exc:
                failure = str(exc)
        elif failure is None:
            failure = f"HTTP {status}"
        healthy = failure is None
        if healthy != self._healthy:
            level, state = (logging.INFO, "answers") if healthy else (logging.WARNING, f"is down ({failure})")
            later = "; serving its models once it answers" if self._healthy is None and not healthy else ""
            log.log(level, "upstream %s %s%s", self.config.url, state, later)
        changed = routes != self._routes
        if changed:
            log.info("upstream models now: %s", describe(routes) or "none")
        self._healthy, self._routes = healthy, routes
        return changed

    # -- jobs ----------------------------------------------------------------------------------

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """An estimate (the upstream's tokenizer is not here): see ``estimate_prompt_tokens``."""
        return estimate_prompt_tokens(request)

    def _http(self) -> aiohttp.ClientSession:
        """The jobs' connection pool (aiohttp: a quarter of httpx's CPU per streamed request here).

        Created in the running loop; never through an HTTP proxy from the environment.
        """
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s,
                                            sock_read=self.config.timeout_s)  # fmt: skip
            # No pool limit: the worker's slots bound the jobs, and the capacity may grow after this.
            self._session = upstream_session(self.config, self._checked(), 0, timeout, _HEADERS)
        return self._session

    def _checked(self) -> CheckedResolver | None:
        """One resolver for jobs and polls (made in the running loop); none when remote upstreams are allowed."""
        if self._resolver is None and not self.config.allow_remote:
            self._resolver = CheckedResolver()
        return self._resolver

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """One streaming request upstream; each text event is yielded as it arrives."""
        route = self._routes.get(request.model)
        if route is None:
            raise RequestError("the upstream does not serve this model now", code="model_not_loaded")
        path, body = request_body(request, route[0])
        job_id = request.job_id
        if self._cancelled.pop(job_id, 0) is None:  # cancelled before it started: nothing goes upstream
            yield Finished("cancelled", estimate_prompt_tokens(request), 0, estimated=True)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks[job_id] = task
        relay = Relay(request.sampling.max_tokens)
        try:
            self._reading.add(job_id)  # connecting and waiting for the headers: a cancel interrupts it
            async with self._http().post(self.config.url + path, data=body, allow_redirects=False) as response:
                self._reading.discard(job_id)
                if response.status != 200:
                    raw = await bounded_body(response.content, MAX_ERROR_BODY)  # never logged
                    log.info("job %s: upstream answered HTTP %d", job_id, response.status)
                    raise refusal(response.status, raw, request, response.headers.get("retry-after"))
                content = response.content
                while job_id not in self._cancelled:
                    self._reading.add(job_id)
                    try:
                        data = await content.readany()  # what has arrived, without waiting for more
                    finally:
                        self._reading.discard(job_id)
                    if not data:  # the end of the body (read to it: the connection goes back to the pool)
                        break
                    self._last_read = time.monotonic()
                    for delta in relay.feed(data):
                        yield delta
                else:
                    relay.reason = "cancelled"
        except asyncio.CancelledError:
            if job_id not in self._cancelled:
                raise
            task.uncancel()  # our own cancel (see ``cancel``): the job ends, the worker carries on
            relay.reason = "cancelled"
        except TimeoutError as exc:  # aiohttp's read and connect timeouts are TimeoutErrors
            log.warning("job %s: upstream timed out (%s)", job_id, type(exc).__name__)
            raise RequestError(f"upstream sent nothing for {self.config.timeout_s:g} s", code="internal") from None
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a line over aiohttp's limit
            log.warning("job %s: upstream connection failed (%s)", job_id, type(exc).__name__)
            self._poll_now.set()
            raise RequestError(f"upstream connection failed ({type(exc).__name__})", code="internal") from None
        finally:
            self._tasks.pop(job_id, None)
            self._reading.discard(job_id)
            self._cancelled.pop(job_id, None)
        if relay.reason is None:
            log.warning("job %s: upstream stream ended without a finish reason", job_id)
            raise RequestError("upstream stream ended before the generation finished", code="internal")
        if relay.usage is not None and relay.reason != "cancelled":
            yield Finished(relay.reason, relay.usage.prompt_tokens, relay.usage.completion_tokens)
        else:
            yield Finished(relay.reason, estimate_prompt_tokens(request), relay.counted, estimated=True)

    def cancel(self, job_id: str) -> None:
        """Stop a job: a read in progress is interrupted now, which closes the upstream connection.

        A cancel that comes before ``generate`` starts is kept (a few thousand at most) and ends the
        job before any request goes upstream.
        """
        self._cancelled[job_id] = None
        while len(self._cancelled) > MAX_EARLY_CANCELS:
            del self._cancelled[next(iter(self._cancelled))]
        task = self._tasks.get(job_id)
        if task is not None and job_id in self._reading:
            task.cancel()

    def unload(self) -> None:
        """Forget the models."""
        self._routes = {}

    async def aclose(self) -> None:
        """Close the connection pools."""
        if self._session is not None:
            await self._session.close()
        if self._poller is not None:
            await self._poller.close()
        if self._resolver is not None:
            await self._resolver.close()
