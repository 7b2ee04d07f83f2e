"""Wire protocol shared by the proxy and the agent: versioned msgspec structs over core NATS.

Nothing here is persisted: messages travel over core NATS (at-most-once, no JetStream).
Subjects are per tenant; an agent's NATS user may only touch its own tenant's subjects.

Subjects (``T`` is the tenant id, ``M`` the model token, ``I`` a proxy instance id):

- ``ollm.T.job.M``            proxy -> agents (queue group ``q-M``), a :class:`Job` sent as a
                              NATS request: the chosen agent answers :class:`Accepted` or
                              :class:`Error` on the request's reply inbox.
- ``ollm.T.job.M.A``          proxy -> agent ``A`` alone (no queue group), the same request: a job
                              offered again after another agent answered it ``busy`` before any
                              text (its upstream said 429/503), to an agent it has not tried.
- ``ollm.T.reply.I.J``        agent -> proxy: :class:`Chunk` ... then :class:`Final` or
                              :class:`Error` for job ``J``.
- ``ollm.T.reply.I.J.A``      the same from agent ``A`` when the job asks for it
                              (``Job.reply_as_agent``): only agent ``A`` may publish there, so
                              the proxy learns who served the job from NATS, not from a claim.
- ``ollm.T.cancel``           proxy -> agents: :class:`Cancel` (the agent running the job stops).
- ``ollm.T.hb.A``             agent ``A`` -> proxies: :class:`Heartbeat`.

Evolving the protocol (msgspec's schema-evolution rules), so that proxies and GPU boxes can be
upgraded one at a time:

- A new field is optional, with a default, and appended; old receivers ignore it (no struct here
  forbids unknown fields) and new receivers fill the default in when an old sender leaves it out.
- Never rename, remove or retype a field, make an optional one required, or use ``array_like``.
- Messages stay a tagged union on ``type``. Old receivers refuse an unknown tag, and an unknown value
  of a ``Literal`` (error code, finish reason, job kind), with a ``ValidationError``: both are
  breaking changes, unless the new message type travels on a subject of its own.
- ``v`` (``PROTOCOL_VERSION``) is bumped only for breaking changes; the agent answers a job of
  another version with ``unsupported_version``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import ssl
from typing import TYPE_CHECKING, Literal, TypedDict
from urllib.parse import urlsplit

import msgspec

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

PROTOCOL_VERSION = 1
SUBJECT_ROOT = "ollm"

FinishReason = Literal["stop", "length", "cancelled"]
ErrorCode = Literal[
    "busy",  # capacity and queue full: retry after ``retry_after_s``
    "bad_request",  # the job cannot be served as asked (e.g. prompt longer than the context)
    "model_not_loaded",
    "unsupported_version",
    "internal",  # the engine failed; the message never carries prompt content
    "stopping",  # the agent is shutting down and took nothing: offer the job again
]
JobKind = Literal["chat", "completion"]


class ChatMessage(msgspec.Struct, frozen=True):
    """One chat turn; content is in flight only, never stored."""

    role: str
    content: str


class Sampling(msgspec.Struct, frozen=True):
    """Generation settings, already validated by the proxy."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


class ModelInfo(msgspec.Struct, frozen=True):
    """A model an agent serves, as announced in heartbeats."""

    id: str
    backend: str
    context_length: int = 2048
    licence: str | None = None


class Job(msgspec.Struct, frozen=True, tag="job", tag_field="type"):
    """A generation job: exactly one of ``messages`` (chat) or ``prompt`` (completion) is set."""

    job_id: str
    tenant_id: str
    model: str
    kind: JobKind
    reply_to: str
    sampling: Sampling = Sampling()
    messages: tuple[ChatMessage, ...] = ()
    prompt: str | None = None
    v: int = PROTOCOL_VERSION
    # Reply on ``agent_reply_subject(reply_to, own agent id)`` instead of ``reply_to``: the
    # subject, which NATS permissions vouch for, then names the agent (issue 13: a claim in a
    # message body is not evidence). Old agents ignore it and reply on ``reply_to``.
    reply_as_agent: bool = False


class Accepted(msgspec.Struct, frozen=True, tag="accepted", tag_field="type"):
    """The agent took the job; ``queued`` is true when it waits for a free slot.

    ``agent_id`` is the agent's claim: it arrives on a request inbox any agent may answer, so the
    proxy never records it as who served the job (see ``Job.reply_as_agent``).
    """

    job_id: str
    agent_id: str
    queued: bool = False
    v: int = PROTOCOL_VERSION


class Chunk(msgspec.Struct, frozen=True, tag="chunk", tag_field="type"):
    """A piece of generated text; ``seq`` counts from 0 per job, ``tokens`` is its token count."""

    job_id: str
    seq: int
    text: str
    tokens: int = 1
    v: int = PROTOCOL_VERSION


class Final(msgspec.Struct, frozen=True, tag="final", tag_field="type"):
    """The job ended; token counts are exact counts from the engine's tokenizer."""

    job_id: str
    seq: int
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    v: int = PROTOCOL_VERSION
    # True when the engine reported no counts and the agent estimated them (issue 18: an upstream
    # OpenAI-compatible server without usage). Old proxies ignore it.
    estimated: bool = False


class Error(msgspec.Struct, frozen=True, tag="error", tag_field="type"):
    """The job failed or was refused; ``message`` is for operators and never holds content."""

    job_id: str
    code: ErrorCode
    message: str
    seq: int = 0
    retry_after_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    v: int = PROTOCOL_VERSION
    # Why a ``bad_request`` was refused, when a client should know: "context_length_exceeded" when
    # the prompt alone fills the model's context (the proxy answers OpenAI's error code for it).
    # A plain string, not a Literal, so that new reasons never break old proxies.
    reason: str | None = None


class Cancel(msgspec.Struct, frozen=True, tag="cancel", tag_field="type"):
    """Stop the job now (the client went away or the proxy gave up)."""

    job_id: str
    v: int = PROTOCOL_VERSION


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat", tag_field="type"):
    """An agent is alive: what it serves and how busy it is."""

    agent_id: str
    tenant_id: str
    models: tuple[ModelInfo, ...]
    capacity: int
    in_flight: int
    queued: int
    interval_s: float
    v: int = PROTOCOL_VERSION


Message = Job | Accepted | Chunk | Final | Error | Cancel | Heartbeat

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """Serialise a wire message."""
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """Parse a wire message; raises ``msgspec.ValidationError`` / ``DecodeError`` on bad input."""
    return _decoder.decode(data)


class _Versioned(msgspec.Struct):
    """Only the version of a message: every other field is skipped, not interpreted."""

    v: int = PROTOCOL_VERSION


_version_decoder = msgspec.msgpack.Decoder(_Versioned)


def version_of(data: bytes) -> int | None:
    """The ``v`` of an encoded message (``None`` when unreadable), to tell a newer release from garbage."""
    try:
        return _version_decoder.decode(data).v
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


_TOKEN_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@functools.lru_cache(maxsize=1024)  # per request on the proxy; model ids repeat
def model_token(model: str) -> str:
    """A NATS-subject-safe token for a model id, stable and collision-resistant."""
    cleaned = _TOKEN_SAFE.sub("_", model)[:64]
    if cleaned == model:
        return cleaned
    digest = hashlib.sha256(model.encode()).hexdigest()[:10]
    return f"{cleaned}-x{digest}"


def job_subject(tenant_id: str, model: str) -> str:
    """Where jobs for one tenant's model are sent."""
    return f"{SUBJECT_ROOT}.{tenant_id}.job.{model_token(model)}"


def direct_job_subject(tenant_id: str, model: str, agent_id: str) -> str:
    """Where a job is offered to one agent by name (an offer again, after another agent was busy)."""
    return f"{job_subject(tenant_id, model)}.{agent_id}"


def queue_group(model: str) -> str:
    """The queue group agents of one model join, so a job goes to exactly one of them."""
    return f"q-{model_token(model)}"


def reply_subject(tenant_id: str, instance_id: str, job_id: str) -> str:
    """Where the agent streams a job's chunks back to the proxy instance that sent it."""
    return f"{SUBJECT_ROOT}.{tenant_id}.reply.{instance_id}.{job_id}"


def agent_reply_subject(reply_to: str, agent_id: str) -> str:
    """A job's reply subject as only agent ``agent_id`` may publish it."""
    return f"{reply_to}.{agent_id}"


def reply_wildcard(instance_id: str) -> str:
    """The proxy instance's single subscription for the replies of all tenants."""
    return f"{SUBJECT_ROOT}.*.reply.{instance_id}.>"


def cancel_subject(tenant_id: str) -> str:
    """Cancels for one tenant's agents."""
    return f"{SUBJECT_ROOT}.{tenant_id}.cancel"


def heartbeat_subject(tenant_id: str, agent_id: str) -> str:
    """Where one agent announces itself."""
    return f"{SUBJECT_ROOT}.{tenant_id}.hb.{agent_id}"


HEARTBEAT_WILDCARD = f"{SUBJECT_ROOT}.*.hb.*"


def agent_permissions(tenant_id: str, agent_id: str) -> dict[str, object]:
    """The NATS permissions of one agent: its own tenant's subjects and nothing else.

    ``allow_responses`` lets it answer a job request once on the proxy's private inbox
    without any publish right on ``_INBOX.>``.
    """
    root = f"{SUBJECT_ROOT}.{tenant_id}"
    return {
        "publish": {
            "allow": [
                f"{root}.reply.*.*",  # ollm.T.reply.I.J (agents that do not name themselves)
                f"{root}.reply.*.*.{agent_id}",  # ollm.T.reply.I.J.A: this agent's own, vouched by NATS
                heartbeat_subject(tenant_id, agent_id),
            ]
        },
        "subscribe": {"allow": [f"{root}.job.>", cancel_subject(tenant_id)]},
        "allow_responses": {"max": 1, "expires": "1m"},
    }


# -- the connection: a tls:// URL means TLS from the first byte ------------------------------
#
# nats-py 2.16 upgrades a connection to TLS only when the server's plaintext INFO line says
# ``tls_required``, even for a ``tls://`` URL and even when given an SSLContext (seen: against a
# plaintext server it connects and sends the password in clear), so a man in the middle who answers
# with a plaintext INFO strips TLS. ``tls_handshake_first`` makes the client start the handshake
# before reading anything: a plaintext peer fails it and no credential is sent. The server must
# take the handshake first (``tls { handshake_first: true }``, deploy/nats/nats-server.conf).
# ``wss://`` is TLS by its scheme; it gets the same context so a private CA works there too.

SECURE_SCHEMES = frozenset({"tls", "wss"})


class TlsOptions(TypedDict, total=False):
    """The ``nats.connect`` keyword arguments this module sets."""

    tls: ssl.SSLContext
    tls_handshake_first: bool


class NatsUrlError(ValueError):
    """The NATS URLs would let a connection fall back to plaintext."""


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves this machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_options(servers: str | list[str], ca_file: str | None = None) -> TlsOptions:
    """``nats.connect`` keyword arguments that require verified TLS for ``tls://``/``wss://`` URLs."""
    urls = [servers] if isinstance(servers, str) else list(servers)
    schemes = {urlsplit(url).scheme.lower() or "nats" for url in urls}
    secure = schemes & SECURE_SCHEMES
    if not secure:
        return TlsOptions()
    if schemes - SECURE_SCHEMES:
        raise NatsUrlError(f"mixing TLS and plaintext NATS URLs lets a connection skip TLS: {', '.join(urls)}")
    options = TlsOptions(tls=ssl.create_default_context(cafile=ca_file or None))
    if "tls" in secure:
        options["tls_handshake_first"] = True
    return options


async def flush_in_order(nc: NATS) -> None:
    """Return once the server has processed every command this connection sent before the call.

    nats-py (2.16) writes ``flush()``'s PING straight to the socket, ahead of commands its flusher task
    has not written yet (a SUB just made), so one flush can come back before the server holds the
    subscription, and a request from another connection then finds no responders. By the time the
    first PONG is read the flusher has written that queue, so the second PING follows it.
    """
    await nc.flush()
    await nc.flush()
