"""Fit a generation into the model's context window before it reaches an agent (issue 13).

``max_tokens=1000000`` once held the only CPU agent for 16 minutes. Where the proxy knows the
model's context length (the longest one the tenant's live agents announce in their heartbeats,
capped at ``TOKEN_COUNT_CEILING``), ``max_tokens`` is clamped to the context left after the prompt,
and a prompt that alone fills the context is refused with OpenAI's error, 400
``code: "context_length_exceeded"``, without bothering an agent.

The proxy has no tokenizer, so the prompt's size is an estimate: one token per
``CHARS_PER_TOKEN_AT_MOST`` characters of prompt text (message contents, or the completion prompt),
rounded up. Real tokenizers give about 4 characters per token on English and fewer on code or
non-Latin scripts, so the estimate is meant as a lower bound: it may leave the agent more room
than really exists, never less, and refuses only prompts that certainly do not fit. The agent
enforces the exact limit with its own tokenizer (agent/backends clamp ``max_tokens`` to the room
left and refuse an over-long prompt with ``bad_request``).
"""

from __future__ import annotations

import dataclasses

import msgspec

from api.proxy.errors import OpenAIError, invalid_request
from api.proxy.translate import Generation

CHARS_PER_TOKEN_AT_MOST = 6


def estimated_prompt_tokens(generation: Generation) -> int:
    """A lower-bound estimate of the prompt's tokens (see the module)."""
    chars = sum(len(m.content) for m in generation.messages) + len(generation.prompt or "")
    return -(-chars // CHARS_PER_TOKEN_AT_MOST)


def context_exceeded(context_length: int, prompt_tokens: int, param: str) -> OpenAIError:
    """OpenAI's 400 for a prompt longer than the model's context."""
    return invalid_request(
        f"This model's maximum context length is {context_length} tokens. However, your {param} resulted in "
        f"about {prompt_tokens} tokens. Please reduce the length of the {param}.",
        param=param,
        code="context_length_exceeded",
    )


def fit_to_context(generation: Generation, context_length: int | None) -> Generation:
    """``generation`` with ``max_tokens`` clamped to the room left; raises when the prompt alone does not fit."""
    if context_length is None:
        return generation  # no live agent announces the model: the agent's own limit applies
    prompt_tokens = estimated_prompt_tokens(generation)
    room = context_length - prompt_tokens
    if room < 1:
        raise context_exceeded(context_length, prompt_tokens, "messages" if generation.kind == "chat" else "prompt")
    if generation.sampling.max_tokens <= room:
        return generation
    return dataclasses.replace(generation, sampling=msgspec.structs.replace(generation.sampling, max_tokens=room))
