"""Streamed chunks built from per-request templates are byte for byte the chunks encoded whole."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from api.proxy.responses import _SENTINEL, ChatEncoder, CompletionEncoder

models = st.one_of(st.sampled_from(["smollm2", "llama-3.1-8b"]), st.text(max_size=30), st.just(_SENTINEL))


@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=6), model=models, include_usage=st.booleans())
def test_chat_chunks_equal_whole_encoding(texts: list[str], model: str, include_usage: bool) -> None:
    fast = ChatEncoder("chatcmpl-1", model, 1700000000, include_usage)
    reference = ChatEncoder("chatcmpl-1", model, 1700000000, include_usage)
    for n, text in enumerate(texts):
        chunk = fast.delta(text)
        assert chunk == reference.encode_delta(text, first=n == 0)
        parsed = json.loads(chunk.removeprefix(b"data: "))
        assert parsed["choices"][0]["delta"]["content"] == text and parsed["model"] == model


@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=6), model=models, include_usage=st.booleans())
def test_completion_chunks_equal_whole_encoding(texts: list[str], model: str, include_usage: bool) -> None:
    fast = CompletionEncoder("cmpl-1", model, 1700000000, include_usage)
    for text in texts:
        chunk = fast.delta(text)
        assert chunk == fast.encode_delta(text)
        assert json.loads(chunk.removeprefix(b"data: "))["choices"][0]["text"] == text
