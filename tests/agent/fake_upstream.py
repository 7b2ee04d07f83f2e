"""A scripted OpenAI-compatible server (a raw ASGI app under uvicorn) for the upstream backend's failure cases.

The model name picks the script:

- ``echo`` (any unknown name): streams the words of the prompt, one event each, then usage;
- ``slow-first``: waits ``first_byte_s`` before answering;
- ``drip``: one word every 50 ms for a long time, and records when the client closed the connection;
- ``cut``: two words, then drops the connection mid-stream;
- ``busy`` / ``unavailable`` / ``boom``: HTTP 429 (Retry-After: 3) / 503 / 500 with the prompt in the body;
- ``bad-echo`` / ``bad-plain``: HTTP 400 whose message quotes the prompt / holds no content;
- ``malformed``: a broken JSON event; ``mid-error``: an error event after one word;
- ``no-usage``: like echo, without the usage event; ``redirect``: HTTP 307 to another host;
- ``lockstep``: like echo, but each word after the first waits for the test to release ``steps``.

``/v1/models`` lists ``models`` (with ``max_model_len``) and hangs while ``hang`` is set. Other GETs
answer ``info[path]`` (as llama.cpp's ``/props`` or SGLang's ``/server_info`` would), else 404.
Request bodies are kept in memory (``requests``) so tests can check what was passed through.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agent.backends.openai_upstream import OpenAIUpstreamBackend
from agent.backends.upstream_config import UpstreamConfig
from tests.support.server import ServerThread

Scope = dict[str, Any]
SCRIPTED = ("slow-first", "drip", "cut", "busy", "unavailable", "boom", "bad-echo", "bad-plain", "malformed")
SCRIPTED_MORE = ("mid-error", "no-usage", "redirect", "lockstep")


class FakeUpstream:
    """The app and its knobs."""

    def __init__(self, models: dict[str, int | None] | None = None, first_byte_s: float = 0.0) -> None:
        default: dict[str, int | None] = {"echo": 4096, **{m: 4096 for m in (*SCRIPTED, *SCRIPTED_MORE)}}
        self.models = default if models is None else models
        self.first_byte_s = first_byte_s
        self.hang = False
        self.requests: list[dict[str, Any]] = []
        self.disconnected_at: list[float] = []
        self.model_polls = 0
        self.followed = 0  # requests that followed the ``redirect`` script's Location
        self.key: str | None = None  # when set, requests must carry it
        self.seen_keys: list[str | None] = []
        self.info: dict[str, bytes] = {}  # GET path (from the server's root) -> body
        self.info_asked: list[str] = []
        self.steps = threading.Semaphore(0)  # ``lockstep``: one release per word after the first

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode()
        self.seen_keys.append(auth.removeprefix("Bearer ") or None)
        if self.key is not None and auth != f"Bearer {self.key}":
            await _json(send, 401, {"error": {"message": "bad key"}})
            return
        if scope["path"].endswith("/models"):
            await self._models(send)
            return
        if scope["method"] == "GET":
            self.info_asked.append(scope["path"])
            if scope["path"] in self.info:
                await _raw(send, 200, self.info[scope["path"]])
            else:
                await _json(send, 404, {"detail": "Not Found"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        if scope["path"].endswith("/followed"):
            self.followed += 1
            request["model"] = "echo"
        self.requests.append(request)
        await self._generate(request, receive, send)

    async def _models(self, send: Any) -> None:
        self.model_polls += 1
        while self.hang:
            await asyncio.sleep(0.05)
        data = [{"id": m, "object": "model", "owned_by": "fake", "max_model_len": n} for m, n in self.models.items()]
        await _json(send, 200, {"object": "list", "data": data})

    async def _generate(self, request: dict[str, Any], receive: Any, send: Any) -> None:
        model = request["model"]
        prompt = request.get("prompt") or request["messages"][-1]["content"]
        chat = "messages" in request
        if model == "slow-first":
            await asyncio.sleep(self.first_byte_s)
        refusals = {
            "busy": (429, {"error": {"message": "too many requests"}}),
            "unavailable": (503, {"error": {"message": "overloaded"}}),
            "boom": (500, {"error": {"message": f"engine crashed on: {prompt}"}}),
            "bad-echo": (400, {"error": {"message": f"invalid input: {prompt}"}}),
            "bad-plain": (400, {"error": {"message": "temperature must be at most 2", "code": 400}}),
        }
        if model in refusals:
            status, payload = refusals[model]
            await _json(send, status, payload, {"retry-after": "3"} if model == "busy" else {})
            return
        if model == "redirect":  # a relay that followed this would send the prompt off the machine
            await _json(send, 307, {}, {"location": "/v1/followed"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        if model == "malformed":
            await _event(send, b'{"choices": [')
            await send({"type": "http.response.body", "body": b""})
            return
        words = prompt.split()
        if model == "drip":
            await self._drip(words, chat, receive, send)
            return
        for i, word in enumerate(words[: request.get("max_tokens", 16)]):
            if model == "cut" and i == 2:
                raise ConnectionAbortedError("scripted mid-stream disconnect")
            if model == "mid-error" and i == 1:
                await _event(send, json.dumps({"error": {"message": f"failed on {prompt}"}}).encode())
                return
            if model == "lockstep" and i > 0 and not await asyncio.to_thread(self.steps.acquire, True, 10):
                return  # the test never asked for this word
            await _event(send, _chunk(word if i == 0 else " " + word, chat))
        shown = min(len(words), request.get("max_tokens", 16))
        await _event(send, _chunk("", chat, "length" if shown < len(words) else "stop"))
        if model != "no-usage" and (request.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": len(words) + 7, "completion_tokens": shown}
            await _event(send, json.dumps({"choices": [], "usage": usage}).encode())
        await _event(send, b"[DONE]")
        await send({"type": "http.response.body", "body": b""})

    async def _drip(self, words: list[str], chat: bool, receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected_at.append(time.monotonic())
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            for i in range(2000):
                if gone.is_set():
                    return
                await _event(send, _chunk(f" {words[i % len(words)]}", chat))
                await asyncio.sleep(0.05)
        except OSError:
            return
        finally:
            watcher.cancel()


def _chunk(text: str, chat: bool, finish: str | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    choice |= {"delta": {"content": text}} if chat else {"text": text}
    return json.dumps({"id": "x", "object": "chunk", "choices": [choice]}).encode()


async def _event(send: Any, data: bytes) -> None:
    await send({"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True})


async def _json(send: Any, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    await _raw(send, status, json.dumps(payload).encode(), headers)


async def _raw(send: Any, status: int, raw: bytes, headers: dict[str, str] | None = None) -> None:
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": raw})


def answer_host(monkeypatch: pytest.MonkeyPatch, host: str, port: int, address: str) -> dict[str, str]:
    """Make ``host`` resolve to ``address`` (port ``port``); the dict's ``address`` changes the answer later."""
    answer, real = {"address": address}, socket.getaddrinfo

    def resolve(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == host:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answer["address"], port))]
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return answer


@contextmanager
def served(app: FakeUpstream) -> Iterator[str]:
    """The scripted server on real HTTP: its base URL ending in /v1."""
    server = ServerThread(app).start()
    try:
        yield server.base_url + "/v1"
    finally:
        server.stop()


OPENED: list[OpenAIUpstreamBackend] = []  # closed after each test (tests/agent/conftest.py)


async def backend_for(url: str, **config: object) -> OpenAIUpstreamBackend:
    """A backend relaying to ``url``, after its first listing (a worker's start makes it)."""
    backend = OpenAIUpstreamBackend(UpstreamConfig(url=url, poll_interval_s=0.2, **config))  # type: ignore[arg-type]
    OPENED.append(backend)
    await backend.refresh()
    return backend


async def until(check: Callable[[], bool], within_s: float = 2.0) -> None:
    """Wait until ``check()`` holds; fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)
