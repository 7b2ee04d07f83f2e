"""Turn validated OpenAI requests into wire jobs, refusing what this server does not implement."""

from __future__ import annotations

from dataclasses import dataclass

from agent.protocol import ChatMessage, JobKind, Sampling
from api.proxy.errors import invalid_request, unsupported
from api.proxy.schemas import ChatCompletionRequest, CompletionRequest, RequestMessage

DEFAULT_CHAT_MAX_TOKENS = 4096  # OpenAI's default is "until the context ends"; agents cap at context
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True, slots=True)
class Generation:
    """What to ask an agent, plus the response options the proxy itself handles."""

    kind: JobKind
    model: str
    sampling: Sampling
    stream: bool
    include_usage: bool
    messages: tuple[ChatMessage, ...] = ()
    prompt: str | None = None


def _check_n(n: int | None) -> None:
    """Only one choice per request."""
    if n is not None and n != 1:
        raise invalid_request("Only n=1 is supported: this server returns one choice per request.", param="n")


def _check_common(req: ChatCompletionRequest | CompletionRequest) -> None:
    """Parameters shared by both endpoints that we accept only at their neutral value."""
    _check_n(req.n)
    if req.frequency_penalty:
        raise unsupported("frequency_penalty", "A non-zero frequency_penalty")
    if req.presence_penalty:
        raise unsupported("presence_penalty", "A non-zero presence_penalty")
    if req.logit_bias:
        raise unsupported("logit_bias", "logit_bias")


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    """``stop`` as a tuple of non-empty strings."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    return tuple(s for s in stop if s)


def _sampling(req: ChatCompletionRequest | CompletionRequest, max_tokens: int) -> Sampling:
    """The generation settings of a request, defaults filled in as OpenAI documents them."""
    return Sampling(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        seed=req.seed,
        stop=_stops(req.stop),
    )


def _include_usage(req: ChatCompletionRequest | CompletionRequest) -> bool:
    """Whether a streamed response ends with a usage chunk."""
    if req.stream_options is not None and not req.stream:
        raise invalid_request("stream_options is only allowed when stream is true.", param="stream_options")
    return bool(req.stream and req.stream_options and req.stream_options.include_usage)


def _message(index: int, message: RequestMessage) -> ChatMessage:
    """One chat message as the agent sees it: role and plain text."""
    role = _ROLES.get(message.role)
    if role is None or message.tool_calls or message.function_call is not None:
        raise unsupported(f"messages[{index}].role", "Tool and function messages are")
    content = message.content
    if content is None:
        return ChatMessage(role=role, content="")
    if isinstance(content, str):
        return ChatMessage(role=role, content=content)
    texts = []
    for part_index, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise unsupported(f"messages[{index}].content[{part_index}].type", "Only text content is; this part")
        texts.append(part.text)
    return ChatMessage(role=role, content="".join(texts))


def chat_generation(req: ChatCompletionRequest) -> Generation:
    """Validate a chat request against what we serve and build its generation."""
    _check_common(req)
    if req.tools or req.functions or req.tool_choice not in (None, "none"):
        raise unsupported("tools", "Tool calling")
    if req.logprobs or req.top_logprobs:
        raise unsupported("logprobs", "logprobs")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise unsupported("response_format", "A response_format other than text")
    if req.modalities and set(req.modalities) != {"text"}:
        raise unsupported("modalities", "Output other than text")
    if req.audio is not None:
        raise unsupported("audio", "Audio output")
    messages = tuple(_message(i, m) for i, m in enumerate(req.messages))
    max_tokens = req.max_completion_tokens or req.max_tokens or DEFAULT_CHAT_MAX_TOKENS
    return Generation(
        kind="chat",
        model=req.model,
        sampling=_sampling(req, max_tokens),
        stream=bool(req.stream),
        include_usage=_include_usage(req),
        messages=messages,
    )


def _prompt(prompt: str | list[str | int | list[int]] | None) -> str:
    """The single text prompt of a completion request."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if prompt and all(isinstance(p, str) for p in prompt):
        raise unsupported("prompt", "A batch of several prompts")
    if not prompt:
        return ""
    raise unsupported("prompt", "A prompt given as token ids")


def completion_generation(req: CompletionRequest) -> Generation:
    """Validate a legacy completion request and build its generation."""
    _check_common(req)
    if req.echo:
        raise unsupported("echo", "echo")
    if req.best_of not in (None, 1):
        raise invalid_request("Only best_of=1 is supported.", param="best_of")
    if req.logprobs is not None:
        raise unsupported("logprobs", "logprobs")
    if req.suffix:
        raise unsupported("suffix", "suffix")
    if req.max_tokens == 0:
        raise invalid_request("max_tokens must be at least 1.", param="max_tokens")
    return Generation(
        kind="completion",
        model=req.model,
        sampling=_sampling(req, req.max_tokens or DEFAULT_COMPLETION_MAX_TOKENS),
        stream=bool(req.stream),
        include_usage=_include_usage(req),
        prompt=_prompt(req.prompt),
    )
