"""The ``openai`` backend's configuration (private URLs, key from a 0600 file or the environment) and parsers."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent import credentials as creds
from agent.backends.base import GenerationRequest, RequestError
from agent.backends.upstream_config import (
    UpstreamConfig,
    UpstreamConfigError,
    check_url,
    from_settings,
    parse_licences,
    parse_routes,
    read_key_file,
)
from agent.backends.upstream_models import ListingError, announced, parse_listing
from agent.backends.upstream_stream import _DONE, Relay, chunk_tokens, stream_event
from agent.backends.upstream_wire import StreamEvent, echoes_content, refusal
from agent.cli import app
from agent.protocol import ChatMessage
from agent.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8001/v1", "http://localhost:8001/v1/", "http://10.1.2.3/v1", "https://192.168.0.9/v1",
     "http://[::1]:8000/v1", "http://172.16.0.1/v1"],
)  # fmt: skip
def test_loopback_and_private_urls_are_taken(url: str) -> None:
    assert check_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://8.8.8.8/v1", "http://1.1.1.1:80/v1", "ftp://127.0.0.1/v1", "127.0.0.1:8000"])
def test_public_or_odd_urls_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(UpstreamConfigError):
        check_url(url)
    if url.startswith("http://"):
        assert check_url(url, allow_remote=True) == url


def test_a_key_in_the_url_is_refused() -> None:
    with pytest.raises(UpstreamConfigError, match="key file"):
        check_url("http://user:sk-secret@127.0.0.1/v1")


def test_the_key_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-local-123\n")
    key.chmod(0o644)
    with pytest.raises(UpstreamConfigError, match="chmod 600"):
        read_key_file(key)
    key.chmod(0o600)
    assert read_key_file(key) == "sk-local-123"


def test_settings_and_environment(tmp_path: Path) -> None:
    env = {
        "OWNLLM_AGENT_BACKEND": "openai",
        "OWNLLM_AGENT_UPSTREAM_URL": "http://127.0.0.1:9/v1",
        "OWNLLM_AGENT_UPSTREAM_KEY": "sk-from-env",  # read apart, never part of the settings struct
        "OWNLLM_AGENT_UPSTREAM_MODELS": "chat=meta/llama,echo",
        "OWNLLM_AGENT_UPSTREAM_LICENCES": "chat=llama3",
    }
    settings = load_settings(env)
    assert "sk-from-env" not in repr(settings)
    config = from_settings(settings, environ=env)
    assert config.api_key == "sk-from-env" and "sk-from-env" not in repr(config)
    assert config.routes == (("chat", "meta/llama"), ("echo", "echo")) and config.licences == (("chat", "llama3"),)
    key = tmp_path / "key"
    key.write_text("sk-from-file")
    key.chmod(0o600)
    assert from_settings(settings, key_file=key, environ=env).api_key == "sk-from-file"
    with pytest.raises(UpstreamConfigError, match="upstream-url"):
        from_settings(load_settings({}), environ={})
    with pytest.raises(SettingsError):
        load_settings({"OWNLLM_AGENT_UPSTREAM_TIMEOUT_S": "soon"})


def test_routes_and_licences_parse() -> None:
    assert parse_routes("discover") == () and parse_routes("") == ()
    assert parse_routes("a, b=c") == (("a", "a"), ("b", "c"))
    with pytest.raises(UpstreamConfigError):
        parse_licences("a")


def test_listings_are_bounded_and_contexts_found_where_servers_put_them() -> None:
    body = (
        b'{"object":"list","data":[{"id":"vllm","max_model_len":32768},{"id":"llamacpp","meta":{"n_ctx_train":4096}},'
        b'{"id":"plain"},{"id":"vllm"},{"id":"","max_model_len":5},{"id":"neg","max_model_len":-1}]}'
    )
    listed = parse_listing(body)
    found = [(m.id, m.context_length) for m in listed]
    assert found == [("vllm", 32768), ("llamacpp", 4096), ("plain", None), ("neg", None)]
    many = b'{"data":[' + b",".join(b'{"id":"m%d"}' % i for i in range(500)) + b"]}"
    assert len(parse_listing(many)) == 64
    routes = announced(UpstreamConfig(url="u", routes=(("x", "plain"), ("y", "missing"))), listed)
    assert list(routes) == ["x"] and routes["x"][0] == "plain" and routes["x"][1].context_length == 4096


@given(prompt=st.text(min_size=8, max_size=60), start=st.integers(0, 50), prefix=st.text(max_size=20))
def test_a_message_quoting_eight_characters_of_the_prompt_is_content(prompt: str, start: int, prefix: str) -> None:
    start = min(start, len(prompt) - 8)
    message = prefix + prompt[start : start + 8]
    request = GenerationRequest(job_id="j", model="m", messages=(ChatMessage("user", prompt),))
    assert echoes_content(message, request)


@given(texts=st.lists(st.text(min_size=1, max_size=700), max_size=40), budget=st.integers(0, 60))
def test_counted_chunk_tokens_never_pass_max_tokens_and_cover_the_text_while_budget_lasts(
    texts: list[str], budget: int
) -> None:
    counted = 0
    for text in texts:
        tokens = chunk_tokens(text, budget - counted)
        assert tokens >= 0
        if counted + -(-len(text) // 256) <= budget:  # room left: the proxy's 256 characters per token holds
            assert len(text) <= 256 * max(tokens, 1)
        counted += tokens
    assert counted <= budget


@given(line=st.binary(max_size=300))
def test_any_upstream_line_is_an_event_the_end_nothing_or_a_request_error(line: bytes) -> None:
    try:
        parsed = stream_event(line)
    except RequestError as exc:
        assert exc.code == "internal" and line.startswith(b"data:")
        return
    assert parsed is None or parsed is _DONE or isinstance(parsed, StreamEvent)


@given(body=st.binary(max_size=400))
def test_any_models_answer_parses_or_is_a_listing_error(body: bytes) -> None:
    try:
        listed = parse_listing(body)
    except ListingError:
        return
    assert len(listed) <= 64 and all(0 < len(m.id) <= 256 for m in listed)


@given(status=st.integers(400, 599), body=st.binary(max_size=200), prompt=st.text(max_size=40))
def test_every_upstream_refusal_maps_to_a_protocol_error_without_the_prompt(
    status: int, body: bytes, prompt: str
) -> None:
    request = GenerationRequest(job_id="j", model="m", messages=(ChatMessage("user", "CANARYzz91 " + prompt),))
    echoed = body + b'{"error": {"message": "CANARYzz91 ' + prompt.encode() + b'"}}'
    for raw in (body, echoed):
        error = refusal(status, raw, request, None)
        assert error.code in ("busy", "bad_request", "model_not_loaded", "internal")
        assert "CANARYzz91" not in str(error)


def test_serve_refuses_a_public_upstream_and_a_missing_url_with_a_clear_error(tmp_path: Path) -> None:
    stored = creds.save(creds.Credentials("a", "t", "nats://127.0.0.1:1", "u", "p"), tmp_path / "c.json")
    runner = CliRunner()
    base = ["serve", "--backend", "openai", "--credentials", str(stored)]
    public = runner.invoke(app, [*base, "--upstream-url", "http://8.8.8.8/v1"], env={})
    assert public.exit_code == 1 and "upstream-allow-remote" in public.output
    missing = runner.invoke(app, base, env={})
    assert missing.exit_code == 1 and "--upstream-url" in missing.output


SSE = st.lists(
    st.one_of(
        st.builds(lambda t: _sse({"choices": [{"index": 0, "delta": {"content": t}}]}), st.text(max_size=300)),
        st.builds(lambda r: _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": r}]}),
                  st.sampled_from(["stop", "length", "abort"])),
        st.builds(lambda p, c: _sse({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}}),
                  st.integers(0, 99), st.integers(0, 99)),
        st.just(b": keep-alive\n\n"),
    ),
    max_size=30,
).map(lambda events: b"".join(events) + b"data: [DONE]\n\n")  # fmt: skip


def _sse(event: dict) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


@given(stream=SSE, cuts=st.lists(st.integers(0, 10_000), max_size=20), budget=st.integers(0, 40))
def test_however_the_bytes_arrive_the_relay_yields_the_same_text_counts_and_end(
    stream: bytes, cuts: list[int], budget: int
) -> None:
    def run(pieces: list[bytes]) -> tuple[str, int, object, object]:
        relay = Relay(budget)
        deltas = [d for piece in pieces for d in relay.feed(piece)]
        assert all((d.text and len(d.text) <= 256 * max(d.tokens, 1)) or relay.counted == budget for d in deltas)
        return "".join(d.text for d in deltas), sum(d.tokens for d in deltas), relay.usage, relay.reason

    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert run(pieces) == run([stream])
    assert run([stream])[1] <= budget
