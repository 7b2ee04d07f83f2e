"""The official OpenAI SDK against the proxy, a real nats-server and a real echo agent."""

from __future__ import annotations

import time

import openai
import pytest

from api.auth import CredentialsRejected
from api.principal import Principal
from tests.proxy.conftest import TENANT_B, Stack

X = [{"role": "user", "content": "x"}]


def client(stack: Stack, secret: str | None = None, **options: object) -> openai.OpenAI:
    """A sync SDK client with a fresh key for tenant A (or the given one)."""
    key = secret or stack.keys.issue()[0]
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0, **options)


def test_models_lists_the_tenants_live_agents(stack: Stack) -> None:
    models = client(stack).models.list()
    assert [m.id for m in models.data] == ["echo"]
    assert models.data[0].object == "model"
    assert client(stack).models.retrieve("echo").id == "echo"


def test_models_of_another_tenant_are_not_listed(stack: Stack) -> None:
    secret, _ = stack.keys.issue(TENANT_B)
    assert client(stack, secret).models.list().data == []


def test_chat_completion(stack: Stack) -> None:
    reply = client(stack).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello big world"}], max_tokens=10
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "hello big world"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].logprobs is None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (3, 3, 6)


def test_chat_max_tokens_gives_length(stack: Stack) -> None:
    reply = client(stack).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "a b c d e"}], max_completion_tokens=2
    )
    assert reply.choices[0].message.content == "a b"
    assert reply.choices[0].finish_reason == "length"


def test_chat_stop_string(stack: Stack) -> None:
    reply = client(stack).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two three four"}], stop=["three"]
    )
    assert reply.choices[0].message.content == "one two "


def test_chat_stream_with_usage(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "alpha beta gamma"}],
            stream=True,
            stream_options={"include_usage": True},
            temperature=0.5,
            top_p=0.9,
            seed=7,
            user="someone",
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta gamma"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


def test_chat_stream_without_usage(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(model="echo", messages=[{"role": "user", "content": "x y"}], stream=True)
    )
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "x y"


def test_completion_and_stream(stack: Stack) -> None:
    sdk = client(stack)
    reply = sdk.completions.create(model="echo", prompt="the quick brown fox", max_tokens=3, stop="brown")
    assert reply.id.startswith("cmpl-") and reply.object == "text_completion"
    assert reply.choices[0].text == "the quick "
    assert reply.usage is not None and reply.usage.prompt_tokens == 4
    chunks = list(
        sdk.completions.create(model="echo", prompt="one two", stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 4


async def test_async_client_chat_and_stream(stack: Stack) -> None:
    sdk = openai.AsyncOpenAI(base_url=stack.base_url + "/v1", api_key=stack.keys.issue()[0], max_retries=0)
    reply = await sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "async hi"}])
    assert reply.choices[0].message.content == "async hi"
    stream = await sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "s t u"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "s t u"
    await sdk.close()


def test_n_other_than_one_is_rejected(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}], n=2)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "n"  # type: ignore[index]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_bad_key_is_authentication_error(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(stack, "sk-wrong").chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "invalid_api_key"


def test_suspended_is_permission_denied(stack: Stack) -> None:
    stack.keys.keys["sk-suspended"] = CredentialsRejected(403, "tenant_suspended", "Your organization is suspended.")
    with pytest.raises(openai.PermissionDeniedError):
        client(stack, "sk-suspended").models.list()


def test_missing_scope_is_permission_denied(stack: Stack) -> None:
    secret, principal = stack.keys.issue(scopes=frozenset({"admin"}))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(stack, secret).chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "insufficient_scope"
    # Refusals are tallied per tenant per interval, not recorded one by one (issue 13).
    assert stack.gateway.usage.rejections.totals[(403, "insufficient_scope")] >= 1
    assert not stack.usage.wait_for(lambda r: r["key_id"] == principal.key_id, timeout_s=0.2)


def test_unknown_model_is_not_found(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(stack).chat.completions.create(model="gpt-9", messages=X)
    assert caught.value.code == "model_not_found"


def test_no_agent_for_tenant_is_503(stack: Stack) -> None:
    secret, _ = stack.keys.issue(TENANT_B)
    with pytest.raises(openai.APIStatusError) as caught:
        client(stack, secret).chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 503


def test_usage_record_per_request(stack: Stack) -> None:
    secret, principal = stack.keys.issue()
    client(stack, secret).chat.completions.create(model="echo", messages=[{"role": "user", "content": "p q r"}])
    records = stack.usage.wait_for(lambda r: r["key_id"] == principal.key_id)
    assert len(records) == 1
    record = records[0]
    assert set(record) == {
        "tenant_id", "user_id", "key_id", "agent_id", "model", "endpoint", "stream", "status",
        "prompt_tokens", "completion_tokens", "ttft_ms", "duration_ms", "request_id", "counts_corrected",
        "counts_estimated",
    }  # fmt: skip
    assert record["status"] == "ok" and record["prompt_tokens"] == 3 and record["completion_tokens"] == 3
    assert record["counts_corrected"] is False  # an honest agent's counts are taken as they are
    assert record["counts_estimated"] is False  # the echo engine counts its tokens
    assert record["agent_id"] and record["endpoint"] == "/v1/chat/completions" and record["stream"] is False
    assert "p q r" not in repr(record)


def test_a_role_the_matrix_keeps_from_inference_is_refused_even_with_the_scope(stack: Stack) -> None:
    secret, principal = stack.keys.issue()
    stack.keys.keys[secret] = Principal(principal.tenant_id, principal.user_id, principal.key_id, "auditor",
                                        frozenset({"inference"}), "team")  # fmt: skip
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(stack, secret).models.list()
    assert caught.value.code == "insufficient_role"


def only_record(stack: Stack, key_id: object) -> dict:
    """The one usage record of a key, after giving a second (wrong) record time to arrive."""
    assert stack.usage.wait_for(lambda r: r["key_id"] == key_id)
    time.sleep(0.3)
    with stack.usage.lock:
        records = [r for r in stack.usage.records if r["key_id"] == key_id]
    assert len(records) == 1, records
    return records[0]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/completions"])
def test_a_successful_request_is_metered_exactly_once(stack: Stack, endpoint: str, stream: bool) -> None:
    secret, principal = stack.keys.issue()
    sdk = client(stack, secret)
    options: dict = {"stream_options": {"include_usage": True}} if stream else {}
    if endpoint == "/v1/chat/completions":
        reply = sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "a b c"}], stream=stream, **options
        )
    else:
        reply = sdk.completions.create(model="echo", prompt="a b c", stream=stream, **options)
    usage = [c.usage for c in reply][-1] if stream else reply.usage  # type: ignore[union-attr]
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3, 3)

    record = only_record(stack, principal.key_id)
    assert (record["status"], record["endpoint"], record["stream"]) == ("ok", endpoint, stream)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (3, 3)
