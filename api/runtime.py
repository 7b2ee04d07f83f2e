"""Running the platform: NATS (embedded or external), its authorization, the demo tenant and agent."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import msgspec
from litestar import Litestar
from rich.console import Console

from api.embedded_nats import EmbeddedNats, auth_file, proxy_password
from api.nats_auth import AgentAccount, NatsAuthorization, command_reload
from api.outbox import Mailer, attach_outbox
from api.projector import Projector
from api.reactions import NatsAuthorizationResync, nats_accounts
from api.services import Services, build_services
from api.settings import Settings
from domain.application import utc_now
from domain.commands.licences import licence_key_for
from domain.context import SYSTEM, Ctx
from domain.ids import tenant_id_for
from domain.roles import SCOPES_BY_ROLE, Role

DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo.ownllm.local"
# The model the demo agent announces on either backend: the wheel's SmolLM2 (agent/models.py BUILTIN_ID).
DEMO_MODEL = "smollm2-135m-instruct"


def agent_accounts(services: Services) -> list[AgentAccount]:
    """The NATS logins of every active agent of a tenant in good standing, from the directory projection."""
    return nats_accounts(services.directory)


def attach_nats_authorization(services: Services, authorization: NatsAuthorization) -> None:
    """Write NATS's authorization now, then rewrite it on every pairing or revocation, until it works."""
    authorization.sync(agent_accounts(services))
    services.reactions.add(
        NatsAuthorizationResync(authorization, lambda: agent_accounts(services), services.runner.catch_up)
    )


def external_authorization(settings: Settings) -> NatsAuthorization:
    """Production: the include file named in settings, reloaded by ``OWNLLM_NATS_RELOAD_COMMAND``."""
    reload = command_reload(settings.nats_reload_command) if settings.nats_reload_command else None
    return NatsAuthorization(auth_file(settings), settings.nats_proxy_user, proxy_password(settings), reload)


def demo_admin_key(services: Services, demo_model: str) -> str:
    """Create the demo tenant on first run; on every run issue its admin a fresh key to print."""
    key = _demo_signup(services)
    _accept_demo_licence(services, demo_model)
    return key


def _accept_demo_licence(services: Services, model: str) -> None:
    """The demo serves one model: accept its licence for the demo tenant (SmolLM2: Apache-2.0) once."""
    tenant_id = tenant_id_for(DEMO_SLUG)
    if licence_key_for(model) in services.directory.accepted_licences(tenant_id):
        return
    ctx = Ctx(actor=SYSTEM, tenant_id=tenant_id, request_id=f"demo-{uuid.uuid4()}")
    services.command(services.app.accept_model_licence, ctx, model=model, acknowledge_unlisted=True)


def _demo_signup(services: Services) -> str:
    """The demo admin's key: from the signup on the first run, freshly issued on later runs."""
    tenant = services.directory.tenants.get(tenant_id_for(DEMO_SLUG))
    if tenant is None:
        result = services.command(
            services.app.signup,
            slug=DEMO_SLUG,
            name="Demo",
            admin_name="Demo Admin",
            admin_email=DEMO_EMAIL,
            request_id=f"demo-{uuid.uuid4()}",
        )
        return str(result.admin_key.secret)
    ctx = Ctx(actor=SYSTEM, tenant_id=tenant.id, request_id=f"demo-{uuid.uuid4()}")
    issued = services.command(
        services.app.issue_api_key,
        ctx,
        user_id=tenant.admin_user_id,
        name="make run",
        scopes=sorted(SCOPES_BY_ROLE[Role.ADMIN]),
    )
    return str(issued.secret)


class DemoAgent:
    """A CPU agent in a child process, paired through the real HTTP pairing endpoint.

    It runs in its own session, so a terminal's Ctrl-C reaches only the API process, which stops
    the agent first (while NATS is still up, so it leaves cleanly); ``--parent-pid`` makes the agent
    stop by itself should the API process die without stopping it.
    """

    def __init__(self, settings: Settings, services: Services, stop_timeout_s: float = 3.0) -> None:
        self.settings = settings
        self.services = services
        self.credentials = Path(settings.var_dir).absolute() / "demo-agent" / "credentials.json"
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def _paired_and_active(self) -> bool:
        try:
            agent_id = uuid.UUID(json.loads(self.credentials.read_text())["agent_id"])
        except (OSError, ValueError, KeyError):
            return False
        agent = self.services.directory.agents.get(agent_id)
        return agent is not None and agent.revoked_at is None

    def start(self, base_url: str) -> None:
        """Pair if needed (needs the API up), then run ``ownllm-agent serve`` with the CPU backend."""
        script = str(Path(sys.executable).parent / "ownllm-agent")
        if not self._paired_and_active():
            ctx = Ctx(actor=SYSTEM, tenant_id=tenant_id_for(DEMO_SLUG), request_id=f"demo-{uuid.uuid4()}")
            pairing = self.services.command(self.services.app.issue_pairing_key, ctx)
            subprocess.run(
                [script, "pair", "--url", base_url, "--pairing-key", pairing.secret, "--name", "demo-cpu-agent",
                 "--credentials", str(self.credentials), "--force"],
                check=True,
            )  # fmt: skip
        log = open(self.credentials.parent / "agent.log", "ab")  # noqa: SIM115 - handed to the child
        with log, self._lock:
            if self._stopped:  # shut down while we paired: start nothing that would outlive us
                return
            self.proc = subprocess.Popen(
                [script, "serve", "--backend", self.settings.demo_backend,
                 "--credentials", str(self.credentials), "--parent-pid", str(os.getpid())],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        """Stop the agent: SIGTERM, then SIGKILL after ``stop_timeout_s``."""
        with self._lock:
            self._stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(self.stop_timeout_s)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _wait_until_up(base_url: str, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return True
        time.sleep(0.1)
    return False


@dataclass
class Platform:
    """The parts one API process runs: services, and the embedded nats-server when no URL is set."""

    settings: Settings
    services: Services
    embedded: EmbeddedNats | None = None
    mailer: Mailer | None = None

    def app(self) -> Litestar:
        """The Litestar app over these services (its shutdown closes them)."""
        from api.app import create_app

        return create_app(self.settings, self.services)

    def stop(self) -> None:
        """Stop the e-mail sender and the embedded nats-server, if any."""
        if self.mailer is not None:
            self.mailer.stop()
        if self.embedded is not None:
            self.embedded.stop()


def start_platform(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Platform:
    """Start NATS if embedded, build the services and keep NATS's authorization in step with agents."""
    embedded: EmbeddedNats | None = None
    if settings.inference and not settings.nats_url:
        embedded = EmbeddedNats(settings).start()
        settings = embedded.settings_for_proxy()
    services = build_services(settings, clock=clock)
    if settings.sweep_interval_s > 0:  # 0: this process never sweeps (a dedicated one, or `policies run`, does)
        from api.sweep_tasks import build_sweeper

        services.sweeper = build_sweeper(services)  # due deletions, export builds and expiry (issue 16)
        services.sweeper.start()
    if settings.inference:
        authorization = embedded.authorization if embedded else external_authorization(settings)
        attach_nats_authorization(services, authorization)
    mailer = attach_outbox(services)  # notices queue always; they are sent when OWNLLM_SMTP_HOST is set
    return Platform(settings, services, embedded, mailer)


def serve(settings: Settings, console: Console) -> None:
    """Run everything this process is configured for until interrupted."""
    import uvicorn

    # httpx logs each request at INFO: here those are only this process's own start-up polls of itself,
    # which would otherwise land in the middle of the banner that another thread prints.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    projector = Projector(settings) if settings.run_projections and settings.projector == "process" else None
    if projector is not None:  # the tracked read models run in the child; this process only reads them
        settings = msgspec.structs.replace(settings, run_projections=False)
    platform = start_platform(settings)
    settings, services = platform.settings, platform.services
    if projector is not None:
        projector.start()
    admin_key = demo_admin_key(services, DEMO_MODEL) if settings.demo else None
    agent = DemoAgent(settings, services) if settings.demo and settings.inference else None
    base = settings.base_url

    def after_start() -> None:
        if not _wait_until_up(base):
            return
        ready = True
        if agent is not None and admin_key is not None:
            console.print("starting the demo CPU agent (it loads SmolLM2-135M, about 15 s) ...")
            agent.start(base)
            ready = _wait_for_a_model(base, admin_key)
        _banner(console, settings, admin_key, platform.embedded, ready)

    threading.Thread(target=after_start, daemon=True).start()
    app = platform.app()
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so cleanup must run as a
    # shutdown hook, not in a ``finally`` that the re-raised signal would skip. The order: the agent
    # (it leaves NATS cleanly), the app's own hooks (the proxy's NATS client, the services), and
    # last the nats-server, so no client of ours is left reconnecting to a server that is gone.
    if agent is not None:
        app.on_shutdown.insert(0, agent.stop)
    if projector is not None:
        app.on_shutdown.append(projector.stop)
    app.on_shutdown.append(platform.stop)
    # proxy_headers=False: uvicorn would otherwise trust X-Forwarded-For from loopback peers; the client
    # address is ours to derive (OWNLLM_TRUSTED_PROXIES, api/client_address.py), from one setting only.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
                proxy_headers=False)  # fmt: skip


def _wait_for_a_model(base_url: str, key: str, timeout_s: float = 120) -> bool:
    """Wait until the proxy lists a model for the demo tenant, so the printed key works at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            listed = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=2)
            if listed.status_code == 200 and listed.json().get("data"):
                return True
        time.sleep(0.25)
    return False


def _banner(
    console: Console, settings: Settings, admin_key: str | None, embedded: EmbeddedNats | None, ready: bool
) -> None:
    base = settings.base_url
    console.rule("[bold]OwnLLM is running")
    console.print(f"API            {base}/api/v1")
    console.print(f"OpenAI proxy   {base}/v1")
    console.print(f"OpenAPI docs   {base}/schema")
    store = settings.sqlite_file if settings.persistence == "sqlite" else "PostgreSQL"
    console.print(f"event store    {store}")
    if embedded is not None:
        console.print(f"NATS           {embedded.url} (embedded, core NATS only)")
    if admin_key:
        console.print(f"demo admin key [bold green]{admin_key}[/]")
        console.print("try it         (paste these lines into a shell)")
        for line in try_it_lines(base, admin_key):
            console.print(line, markup=False, highlight=False, soft_wrap=True)  # never broken by rich
        if not ready:
            console.print("[yellow]the demo agent has not announced a model yet; see var/demo-agent/agent.log[/]")


def try_it_lines(base_url: str, key: str, width: int = 80) -> list[str]:
    """One shell command asking the demo a question with this venv's python, in lines of ``width`` at most.

    Lines end in `` \\`` (a shell continuation), so the block pastes as one command on a terminal of
    any width; only a single word longer than a line (a very long path) can exceed ``width``.
    """
    words = [
        f"OPENAI_BASE_URL={base_url}/v1",
        f"OPENAI_API_KEY={key}",
        sys.executable,
        "-m",
        "api.try_it",
        "What is the capital of France?",
    ]
    return shell_lines([shlex.quote(word) for word in words], width)


def shell_lines(words: list[str], width: int, indent: str = "  ") -> list[str]:
    """Shell words joined into lines of at most ``width`` columns, all but the last ending in `` \\``."""
    lines: list[str] = []
    line = indent
    for word in words:
        candidate = f"{line} {word}" if line.strip() else indent + word
        if len(candidate) + 2 > width and line.strip():  # room for " \\" unless it is the last word
            lines.append(line)
            line = indent + word
        else:
            line = candidate
    lines.append(line)
    return [f"{text} \\" for text in lines[:-1]] + lines[-1:]
