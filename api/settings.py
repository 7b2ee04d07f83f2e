"""Settings: one frozen struct loaded from ``OWNLLM_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from agent.protocol import is_loopback_host
from api.client_address import parse_networks
from api.secret_files import PEPPER_HINT, pepper_problem
from policies.limits import DEFAULT_PLAN
from policies.retention import is_jurisdiction

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
    # where `ownllm serve` runs them: a child process off the request path (api/projector.py), or threads
    projector: Literal["process", "in-process"] = "process"
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
    # NATS hardening (issue 13): a private CA for tls:// URLs (default: the system's CAs)
    nats_ca_file: str = ""
    price_notice_days: int = 30  # notice before a token price change takes effect (policies/prices.py)
    default_plan: str = DEFAULT_PLAN  # limits tier (policies/limits.py) until billing assigns plans per tenant
    accept_timeout_s: float = 5.0  # an agent must accept a job within this
    generation_timeout_s: float = 300.0  # no chunk for this long: 504
    # Usage pipeline (issue 13): batches from a bounded buffer; past the bound, the spool in var_dir.
    usage_batch_size: int = 500  # records per transaction
    usage_buffer_bound: int = 20_000  # records held in memory before spilling to var_dir/usage-spool
    usage_tally_interval_s: float = 60.0  # refused requests (401/403/429): one tally per tenant per interval
    # Public signup (README "Locking signup down"): who may sign up, how often, and how many tenants.
    signup: Literal["open", "invite", "closed"] = "open"  # closed: tenants come from `ownllm tenants create`
    signup_tokens: str = ""  # invite: comma-separated secrets (16+ characters) sent as X-Signup-Token
    signup_per_hour: int = 10  # per client address (an IPv6 /64 counts as one), also the burst
    signup_global_per_hour: int = 100  # all addresses together, so changing addresses does not help
    signup_addresses: int = 10_000  # addresses remembered; the least recently seen is forgotten first
    trusted_proxies: str = ""  # comma-separated IPs/CIDRs whose X-Forwarded-For names the client
    max_tenants: int = 10_000  # tenants this process holds in memory; past it public signup answers 503
    # Model licences (terms §9): off only where the operator settles licences outside the platform
    model_licence_gate: bool = True
    # Key sharing (policies/sharing.py): a key seen from more networks or user agents than this within the window
    key_sharing: bool = True
    key_sharing_networks: int = 5
    key_sharing_user_agents: int = 8
    key_sharing_window_s: float = 86_400.0
    # Legal documents (README "Your own terms"): a folder of terms/privacy/dpa versions; default: ours, bundled
    legal_dir: str = ""
    # Demo (make run)
    demo: bool = False
    demo_backend: Literal["transformers", "echo"] = "transformers"  # the demo agent's backend
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Integrity ledger (api/ledger_keys.py): signed checkpoints of the event log
    ledger_signing_key_file: str = ""  # Ed25519 signing key (note skey text); default var/secrets/, generated
    ledger_origin: str = ""  # checkpoints' origin and the key's name; default: the key's name ("<public host>/ownllm")
    ledger_retired_keys: str = ""  # verifier keys (vkeys) of retired signing keys, comma-separated: still accepted
    checkpoint_every_events: int = 100_000  # and every checkpoint_every_s, whichever comes first
    checkpoint_every_s: float = 60.0
    # E-mail (api/outbox): without a host, notices stay in the local outbox (`ownllm outbox list`)
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_password_file: str = ""  # read at start (a secret mounted as a file); wins over smtp_password
    smtp_from: str = "OwnLLM <noreply@ownllm.invalid>"
    smtp_starttls: bool = True  # upgrade with STARTTLS (required: the server must offer it)
    # Data lifecycle (issue 16): the policy sweeper, export files, and the subject-key store
    sweep_interval_s: float = 60.0  # how often `ownllm serve` sweeps due deletions and expired exports; 0: never
    exports_dir: str = ""  # default {var_dir}/exports
    keys_dsn: str = ""  # PostgreSQL subject keys in their own database (production); default postgres_dsn
    keys_vacuum_interval_s: float = 3600.0  # VACUUM of the PostgreSQL key table after destroyed keys
    # Billing (issue 15, api/billing_config.py): off unless a Stripe secret key is configured
    stripe_secret_key: str = ""  # or stripe_secret_key_file (a file holding it, e.g. a mounted secret)
    stripe_secret_key_file: str = ""
    stripe_webhook_secret: str = ""  # whsec_...: POST /api/v1/billing/stripe/webhook answers 404 without one
    stripe_webhook_secret_file: str = ""
    stripe_api_base: str = ""  # default: the SDK's (https://api.stripe.com); tests point it at localstripe
    seller_jurisdiction: Literal["FR", "NO"] = "FR"  # whose VAT and billing retention rules apply (policies/vat.py)
    # Whose law keeps a tenant's activity records (audit, usage) until its admin sets one (ISO 3166-1 alpha-2;
    # empty: the seller's). policies/retention.py
    default_jurisdiction: str = ""

    @property
    def sqlite_file(self) -> str:
        """Where the embedded event store lives."""
        return self.sqlite_path or os.path.join(self.var_dir, "events.sqlite")

    @property
    def exports_path(self) -> str:
        """Where export files live until their link expires."""
        return self.exports_dir or os.path.join(self.var_dir, "exports")

    @property
    def activity_jurisdiction(self) -> str:
        """The jurisdiction of a tenant that set none (``default_jurisdiction``, else the seller's)."""
        return self.default_jurisdiction.strip().upper() or self.seller_jurisdiction

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
    nats_problem = agent_nats_url_problem(settings)
    if nats_problem:
        raise SettingsError(nats_problem)
    if settings.persistence == "postgres" and not settings.postgres_dsn:
        raise SettingsError("OWNLLM_POSTGRES_DSN is required when OWNLLM_PERSISTENCE=postgres")
    _check_signup(settings)
    if not is_jurisdiction(settings.activity_jurisdiction):
        raise SettingsError("OWNLLM_DEFAULT_JURISDICTION must be an ISO 3166-1 alpha-2 country code such as NO or FR")
    return settings


SIGNUP_TOKEN_MIN = 16


def signup_tokens(settings: Settings) -> tuple[str, ...]:
    """The invite-mode signup tokens, trimmed."""
    return tuple(t.strip() for t in settings.signup_tokens.split(",") if t.strip())


def _check_signup(settings: Settings) -> None:
    """Refuse signup settings that would not do what they say (an invite mode nobody can pass, ...)."""
    for name in ("signup_per_hour", "signup_global_per_hour", "signup_addresses", "max_tenants"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"{PREFIX}{name.upper()} must be at least 1")
    tokens = signup_tokens(settings)
    if settings.signup == "invite" and not tokens:
        raise SettingsError("OWNLLM_SIGNUP=invite needs OWNLLM_SIGNUP_TOKENS (comma-separated secrets)")
    if any(len(token) < SIGNUP_TOKEN_MIN for token in tokens):
        raise SettingsError(f"each of OWNLLM_SIGNUP_TOKENS needs at least {SIGNUP_TOKEN_MIN} characters")
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"OWNLLM_TRUSTED_PROXIES: {exc}") from None


# -- NATS hardening (issue 13): which NATS URL agents are told --------------------------------


def agent_nats_url(settings: Settings) -> str:
    """The NATS URL handed to agents at pairing: the public one, else a loopback ``nats_url``; else ``""``.

    A non-loopback ``nats_url`` is the internal address of the cluster the proxy uses: never handed out.
    """
    if settings.nats_public_url:
        return settings.nats_public_url
    first = settings.nats_url.split(",")[0].strip()
    return settings.nats_url if first and is_loopback_host(urlsplit(first).hostname) else ""


def agent_nats_url_problem(settings: Settings) -> str | None:
    """Why agents could not be given a safe NATS URL with these settings, or None."""
    if settings.nats_url and not agent_nats_url(settings):
        return (
            "OWNLLM_NATS_PUBLIC_URL is required when OWNLLM_NATS_URL is not on loopback: agents are told the "
            "public URL at pairing (e.g. tls://nats.example.com:4222), never the proxy's internal one"
        )
    for url in filter(None, (u.strip() for u in settings.nats_public_url.split(","))):
        parts = urlsplit(url)
        if parts.scheme not in ("tls", "wss") and not is_loopback_host(parts.hostname):
            return (
                f"OWNLLM_NATS_PUBLIC_URL {url!r} is not TLS: agents would send their NATS password in clear; "
                "use tls://HOST:PORT (or wss://HOST:PORT for the websocket listener)"
            )
    return None


def _env_name(message: str) -> str:
    """Rewrite msgspec's ``$.field`` paths into the environment variable's name."""
    for field in _FIELDS.values():
        message = message.replace(f"`$.{field}`", PREFIX + field.upper())
    return message
