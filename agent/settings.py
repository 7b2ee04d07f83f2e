"""Agent settings from ``OWNLLM_AGENT_*`` environment variables, as one frozen struct."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

import msgspec

PREFIX = "OWNLLM_AGENT_"
BackendChoice = Literal["auto", "exllamav3", "exllamav2", "transformers", "echo"]


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


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Read ``OWNLLM_AGENT_*`` variables; raise :class:`SettingsError` naming any bad or unknown one."""
    env = os.environ if environ is None else environ
    values = {k[len(PREFIX) :].lower(): v for k, v in env.items() if k.startswith(PREFIX)}
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
