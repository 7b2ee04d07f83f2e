"""HTTP-level behaviour: OpenAI error objects for bad input, never a 500 (hypothesis-fuzzed bodies)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.conftest import Stack

FIELDS = [
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
    "stream", "stream_options", "stop", "seed", "user", "logprobs", "tools", "echo", "best_of",
]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "bogus"]), "content": json_values}
    ),
    max_size=3,
)
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    st.fixed_dictionaries(
        {"model": st.sampled_from(["echo", "nope", ""]), "messages": messages},
        optional={
            "max_tokens": json_values,
            "stream": st.booleans(),
            "stop": json_values,
            "temperature": json_values,
            "n": st.integers(-2, 3),
            "stream_options": json_values,
        },
    ),
)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    """A keep-alive client with an enterprise key (the fuzzing must not hit rate limits)."""
    secret, _ = stack.keys.issue(plan="enterprise")
    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield client


def error_of(response: httpx.Response) -> dict:
    """The OpenAI error object of a response."""
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
def test_fuzzed_json_bodies_never_give_500(http: httpx.Client, body: object, path: str) -> None:
    response = http.post(path, json=body)
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code >= 400:
        error_of(response)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_fuzzed_raw_bytes_never_give_500(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text


def test_malformed_json_is_400_invalid_json(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", content=b'{"model": "echo",')
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_wrong_type_names_the_field(http: httpx.Client) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and error_of(response)["param"] == "temperature"
    body = {"model": "echo", "messages": [{"role": "user", "content": 5}]}
    assert error_of(http.post("/v1/chat/completions", json=body))["param"] == "messages[0].content"


def test_unknown_argument_and_missing_field(http: httpx.Client) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}
    assert error_of(http.post("/v1/chat/completions", json=body))["param"] == "frobnicate"
    assert error_of(http.post("/v1/chat/completions", json={"model": "echo"}))["param"] == "messages"


def test_body_over_the_limit_is_413(http: httpx.Client, stack: Stack) -> None:
    big = "x" * (stack.gateway.settings.max_body_bytes + 10)
    response = http.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": big}]})
    assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"


def test_missing_key_is_401(stack: Stack) -> None:
    response = httpx.get(stack.base_url + "/v1/models")
    assert response.status_code == 401 and error_of(response)["type"] == "authentication_error"


def test_errors_never_echo_content(http: httpx.Client) -> None:
    canary = "CANARY-7f3e"
    body = {"model": "echo", "messages": [{"role": "user", "content": canary}], "max_tokens": canary}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and canary not in response.text


HEAD = b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], '
DEEP = {  # where the schema takes any JSON, msgspec descends until it raises RecursionError (not DecodeError)
    "tools": HEAD + b'"tools": ' + b"[" * 500_000,
    "tool_choice": HEAD + b'"tool_choice": ' + b'{"a":' * 200_000,
    "image_url": b'{"model": "echo", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": '
    + b"[" * 500_000,
}
DEEP_ELSEWHERE = [b"[" * 1_000_000, b'{"model": "echo", "prompt": ' + b"[" * 500_000, b'{"a":' * 200_000]


@pytest.mark.parametrize("raw", DEEP.values(), ids=DEEP.keys())
def test_deeply_nested_json_is_400_invalid_json(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_json")


@pytest.mark.parametrize("raw", DEEP_ELSEWHERE)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_deep_nesting_anywhere_is_a_400(http: httpx.Client, path: str, raw: bytes) -> None:
    response = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert error_of(response)["type"] == "invalid_request_error"


CHAT = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data"]
)
def test_a_body_not_declared_as_json_is_400_like_openai(http: httpx.Client, content_type: str) -> None:
    response = http.post("/v1/chat/completions", content=json.dumps(CHAT), headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_media_type")
    assert "application/json" in error["message"]


def test_the_sdk_surfaces_a_non_json_body_as_a_bad_request(stack: Stack) -> None:
    """400 (not 415) because the SDK maps it to ``BadRequestError``; a 415 is only a bare ``APIStatusError``."""
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=stack.keys.issue()[0], max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="echo", messages=CHAT["messages"], extra_headers={"Content-Type": "text/plain"}
        )
    assert caught.value.code == "unsupported_media_type"
    assert client.chat.completions.create(model="echo", messages=CHAT["messages"]).choices[0].message.content == "x"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None])
def test_json_declared_or_undeclared_is_served(http: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("/v1/chat/completions", content=json.dumps(CHAT), headers=headers)
    assert response.status_code == 200, response.text
