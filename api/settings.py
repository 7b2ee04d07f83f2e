"""Settings: one frozen struct loaded from ``OWNLLM_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import msgspec

from api.secret_files import PEPPER_HINT, pepper_problem
from policies.limits import DEFAULT_PLAN

PREFIX = "OWNLLM_"


class SettingsError(ValueError):
    """A bad or unknown ``OWNLLM_*`` variable; the message names it."""


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the composition root needs; defaults give the embedded single-machine setup."""

    # Persistence: "sqlite" (embedded default, file under var/) or "postgres".
    persistence: Literal["sqlite", "postgres"] = "sqlite"
    var_dir: str = "var"
    sqlite_path: str = ""  # default: {var_dir}/events.sqlite
    postgres_dsn: str = ""  # e.g. postgresql://ownllm@db:5432/ownllm
    postgres_schema: str = "public"
    postgres_pool_size: int = 8
    run_projections: bool = True  # write the tracked read models; exactly one process should (others read)
    # Secrets: the pepper keys API-key hashes (HMAC-SHA256); generated into var/ when empty.
    key_pepper: str = ""
    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""  # what agents and clients use to reach us; default http://host:port
    max_body_bytes: int = 1024 * 1024
    # Lifetimes
    invite_ttl_s: int = 7 * 24 * 3600
    pairing_ttl_s: int = 3600
    # NATS (inference path)
    inference: bool = True  # serve /v1 (the OpenAI-compatible proxy); off for a management-only process
    nats_url: str = ""  # empty: start an embedded nats-server on loopback (make run / tests)
    nats_proxy_user: str = "ownllm-proxy"
    nats_proxy_password: str = ""  # generated into var/ for the embedded server
    nats_public_url: str = ""  # the URL handed to agents at pairing; default nats_url
    nats_auth_file: str = ""  # generated authorization include; default {var_dir}/nats/auth.conf
    nats_reload_command: str = ""  # run after the auth file changes (production); embedded: SIGHUP
    default_plan: str = DEFAULT_PLAN  # limits tier (policies/limits.py) until billing assigns plans per tenant
    accept_timeout_s: float = 5.0  # an agent must accept a job within this
    generation_timeout_s: float = 300.0  # no chunk for this long: 504
    # Demo (make run)
    demo: bool = False
    demo_backend: Literal["transformers", "echo"] = "transformers"  # the demo agent's backend
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Integrity ledger (api/ledger_keys.py): signed checkpoints of the event log
    ledger_signing_key_file: str = ""  # Ed25519 signing key (note skey text); default var/secrets/, generated
    ledger_origin: str = ""  # checkpoints' origin and the key's name; default: the key's name ("<public host>/ownllm")
    ledger_retired_keys: str = ""  # verifier keys (vkeys) of retired signing keys, comma-separated: still accepted
    checkpoint_every_events: int = 1000
    checkpoint_every_s: float = 60.0

    @property
    def sqlite_file(self) -> str:
        """Where the embedded event store lives."""
        return self.sqlite_path or os.path.join(self.var_dir, "events.sqlite")

    @property
    def base_url(self) -> str:
        """The URL printed for users and given to agents."""
        return self.public_url or f"http://{self.host}:{self.port}"


_FIELDS = {name.upper(): name for name in Settings.__struct_fields__}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``OWNLLM_*`` variables; unknown or malformed ones raise ``SettingsError``."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for key, value in env.items():
        if not key.startswith(PREFIX) or key.startswith("OWNLLM_AGENT_"):
            continue
        name = _FIELDS.get(key[len(PREFIX) :])
        if name is None:
            raise SettingsError(f"unknown setting {key}; known: {', '.join(PREFIX + f for f in _FIELDS)}")
        raw[name] = value
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"bad setting: {_env_name(str(exc))}") from exc
    if "OWNLLM_KEY_PEPPER" in env or "key_pepper" in overrides:
        problem = pepper_problem(settings.key_pepper)
        if problem:  # set but empty or weak: never fall back to a generated one
            raise SettingsError(f"OWNLLM_KEY_PEPPER {problem}; {PEPPER_HINT} (or unset it to use a generated one)")
    if settings.persistence == "postgres" and not settings.postgres_dsn:
        raise SettingsError("OWNLLM_POSTGRES_DSN is required when OWNLLM_PERSISTENCE=postgres")
    return settings


def _env_name(message: str) -> str:
    """Rewrite msgspec's ``$.field`` paths into the environment variable's name."""
    for field in _FIELDS.values():
        message = message.replace(f"`$.{field}`", PREFIX + field.upper())
    return message
