"""What route handlers receive by name through Litestar's DI: the caller, and typed services.

A handler names what it needs (``principal``, ``ctx``, ``request_id``, ``commands``, ``directory``,
``usage``, ``audit``, ``settings``, ``now``) and never reaches into the app's state. Every provider takes only
the request (a reserved name) or nothing, so no injected name shows up as a parameter in the OpenAPI.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from litestar.di import NamedDependency, Provide

from api.audit_reader import AuditReader
from api.exports import ExportFiles
from api.guards import AnyRequest, principal_of, request_id_of
from api.principal import Principal
from api.services import Services
from domain.application import OwnLLM
from domain.context import Ctx

P = ParamSpec("P")
T = TypeVar("T")


class CommandService:
    """Runs the application's commands, then brings the projections up to date (read your own write)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def run(self, command: Callable[Concatenate[OwnLLM, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``command``, a method of the application (``OwnLLM.revoke_invite``), with these arguments."""
        return self._services.command(command, self._services.app, *args, **kwargs)


def provide_request_id(request: AnyRequest) -> str:
    """The request's id (the caller's ``X-Request-ID`` when well-formed)."""
    return request_id_of(request)


def provide_principal(request: AnyRequest) -> Principal:
    """The caller the guard authenticated (only on routes that declare an action)."""
    return principal_of(request)


def provide_ctx(principal: NamedDependency[Principal], request_id: NamedDependency[str]) -> Ctx:
    """The command context of an authenticated request: actor, tenant, request id and the caller."""
    return Ctx(principal.actor, principal.tenant_id, request_id, principal.caller)


def dependencies(services: Services) -> dict[str, Provide]:
    """The app's dependencies, each by the name a handler asks for it."""
    commands = CommandService(services)
    clock = services.app.clock

    def now() -> datetime:
        """The time of the request, by the application's clock."""
        return clock()

    return {
        "request_id": Provide(provide_request_id, sync_to_thread=False),
        "principal": Provide(provide_principal, sync_to_thread=False),
        "ctx": Provide(provide_ctx, sync_to_thread=False),
        "now": Provide(now, sync_to_thread=False),
        "commands": _always(commands),
        "directory": _always(services.directory),
        "usage": _always(services.usage),
        "audit": _always(AuditReader(services.audit, services.runner.log, services.app.mapper.to_domain_event)),
        "settings": _always(services.settings),
        "ledger": _always(services.ledger),
        "legal_documents": _always(services.app.documents()),
        "enforcement": _always(services.enforcement),
        "outbox": Provide(lambda: services.outbox, sync_to_thread=False),  # None until attached (api/outbox)
        "lifecycle": _always(services.lifecycle),
        "export_files": _always(ExportFiles(services.settings.exports_path)),
        "wake_sweeper": _always(lambda: services.sweeper.wake() if services.sweeper is not None else None),
        "credits": _always(services.credit_view),
    }


def _always(value: Any) -> Provide:
    """A dependency that is the same object for every request."""

    def provide() -> Any:
        return value

    return Provide(provide, use_cache=True, sync_to_thread=False)
