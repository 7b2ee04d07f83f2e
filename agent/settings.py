"""Agent settings from ``OWNLLM_AGENT_*`` environment variables, as one frozen struct."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

import msgspec

PREFIX = "OWNLLM_AGENT_"
BackendChoice = Literal["auto", "exllamav3", "exllamav2", "transformers", "echo", "openai"]
# Read from the environment by agent.backends.upstream_config, never kept in the settings struct.
SECRET_VARIABLES = frozenset({"upstream_key"})


class SettingsError(ValueError):
    """A bad or unknown ``OWNLLM_AGENT_`` variable, named in the message."""


class AgentSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything ``ownllm-agent serve`` can be told through the environment."""

    credentials: str | None = None
    backend: BackendChoice = "auto"
    model_dir: str | None = None
    builtin_model: bool = True
    nats_url: str | None = None
    nats_ca_file: str | None = None  # a private CA for tls:// or wss:// NATS URLs (default: the system's CAs)
    capacity: int | None = None
    queue_limit: int = 8
    heartbeat_interval_s: float = 5.0
    echo_token_delay_s: float = 0.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # --backend openai: a local OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, TabbyAPI)
    upstream_url: str | None = None  # e.g. http://127.0.0.1:8001/v1
    upstream_key_file: str | None = None  # a 0600 file holding the upstream's API key
    upstream_models: str = "discover"  # "discover", or "a,b" / "public=upstream-id,..."
    upstream_context_length: int = 4096  # when the server does not report one
    upstream_licences: str | None = None  # "model=SPDX-id,..." announced with the models
    upstream_poll_interval_s: float = 5.0  # how often GET /v1/models is asked (health and discovery)
    upstream_timeout_s: float = 120.0  # the longest wait for the upstream's next byte
    upstream_allow_remote: bool = False  # allow a URL outside loopback and private networks


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Read ``OWNLLM_AGENT_*`` variables; raise :class:`SettingsError` naming any bad or unknown one."""
    env = os.environ if environ is None else environ
    values = {k[len(PREFIX) :].lower(): v for k, v in env.items() if k.startswith(PREFIX)}
    values = {k: v for k, v in values.items() if k not in SECRET_VARIABLES}
    known = set(AgentSettings.__struct_fields__)
    unknown = sorted(PREFIX + k.upper() for k in values if k not in known)
    if unknown:
        raise SettingsError(
            f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(map(env_name, known)))}"
        )
    try:
        return msgspec.convert(values, AgentSettings, strict=False)
    except msgspec.ValidationError as exc:
        match = re.search(r"at `\$\.(\w+)", str(exc))
        field = match.group(1) if match else None
        where = env_name(field) if field else "an OWNLLM_AGENT_ variable"
        shown = f" {values[field]!r}" if field in values else ""
        raise SettingsError(f"bad value{shown} for {where}: {str(exc).split(' - at ')[0]}") from exc
