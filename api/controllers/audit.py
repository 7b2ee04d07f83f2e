"""The audit trail for compliance officers, auditors and admins: search, export, subject history."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from litestar import Controller, Response, get
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from api import schemas
from api.audit_export import csv_export, jsonl_lines
from api.audit_names import Names
from api.audit_reader import AuditReader
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.pagination import DEFAULT_LIMIT, Limit
from api.principal import Principal
from api.views import agent_out, key_out, tenant_out, user_out
from domain.application import OwnLLM
from domain.context import Ctx
from domain.errors import InvalidValue
from domain.permissions import Action
from projections.audit_log import AuditFilter, AuditRow, Order, Page
from projections.directory import Directory
from projections.replay import Replayed

Position = Annotated[int | None, QueryParameter(ge=0, description="A row's position (keyset cursor).")]
POSITION = "X-Audit-Position"
# ``request_id`` is also the name of the injected id of the current request: the filter takes another name.
OfRequest = Annotated[str | None, QueryParameter(name="request_id", description="Rows of this request id.")]
AUDIT_HEADERS = [
    ResponseHeader(
        name="Link",
        description='`rel="next"` and `rel="prev"` pages, when they exist.',
        documentation_only=True,
        required=False,
    ),
    ResponseHeader(
        name="X-Total-Count",
        description="Matching rows (exact for filters on action and actor; with time, subject or request id, "
        "an estimate past 100,000).",
        documentation_only=True,
    ),
    ResponseHeader(
        name=POSITION, description="The notification position the answer stands on.", documentation_only=True
    ),
    ResponseHeader(
        name="X-Total-Count-Exact", description="`false` when X-Total-Count is an estimate.", documentation_only=True
    ),
]


def provide_where(
    principal: NamedDependency[Principal],
    directory: NamedDependency[Directory],
    actor: FromQuery[str | None] = None,
    action: FromQuery[str | None] = None,
    subject: FromQuery[UUID | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    of_request: OfRequest = None,
) -> AuditFilter:
    """The filter the query names (a dependency of the listing and the export, which take the same filters)."""
    names = Names(directory, principal.tenant_id)
    return audit_filter(names, principal.tenant_id, actor, action, subject, since, until, of_request)


def audit_filter(
    names: Names, tenant_id: UUID, actor: str | None, action: str | None, subject: UUID | None, since: datetime | None,
    until: datetime | None, request_id: str | None,
) -> AuditFilter:  # fmt: skip
    """The filter a query names; ``action=api_key.*`` matches every action under ``api_key.``, and
    ``actor=<user id>`` whatever the user did through any of their keys."""
    for name, value in (("actor", actor), ("action", action), ("request_id", request_id)):
        if value is not None and not 0 < len(value) <= 200:
            raise InvalidValue(f"`{name}` must be 1 to 200 characters", field=name)
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidValue(f"`{name}` needs a timezone (e.g. 2027-01-31T00:00:00Z)", field=name)
    prefix: str | None = None
    if action is not None and action.endswith("*"):
        prefix, action = action[:-1], None
        if not prefix:
            raise InvalidValue("`action=*` matches everything: leave it out", field="action")
    actors: tuple[str, ...] = ()
    if actor is not None:
        actors = (actor,)
        with contextlib.suppress(ValueError):
            actors = names.actors_of(UUID(actor)) or actors
    return AuditFilter(tenant_id, actors, action, prefix, subject, since, until, request_id)


class AuditController(Controller):
    """Rows hold ids, action names and counts; names are looked up as read (erased: ``<erased>``)."""

    path = "/api/v1/audit"
    tags = ["audit"]
    dependencies = {"where": Provide(provide_where, sync_to_thread=False)}

    @get("/", operation_id="listAudit", opt={"action": Action.AUDIT_READ}, response_headers=AUDIT_HEADERS,
         sync_to_thread=True)  # fmt: skip
    def search(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        audit: NamedDependency[AuditReader],
        directory: NamedDependency[Directory],
        where: NamedDependency[AuditFilter],
        order: FromQuery[Literal["asc", "desc"]] = "desc",
        limit: Limit = DEFAULT_LIMIT,
        after: Position = None,
        before: Position = None,
    ) -> Response[list[schemas.AuditRowOut]]:
        """Search the audit log, newest first (``order=asc`` for oldest first); keyset pages."""
        names = Names(directory, principal.tenant_id)
        position = audit.settle()
        page = audit.page(where, after=after, before=before, limit=limit, order=order)
        headers = _count_headers(audit, where, position)
        links = _links(request, page, order, limit)
        if links:
            headers["Link"] = links
        return Response([row_out(r, names) for r in page.rows], headers=headers)

    @get("/export", operation_id="exportAudit", opt={"action": Action.AUDIT_READ}, sync_to_thread=True)
    def export(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        audit: NamedDependency[AuditReader],
        directory: NamedDependency[Directory],
        where: NamedDependency[AuditFilter],
        format: FromQuery[Literal["csv", "jsonl"]] = "csv",
    ) -> Stream:
        """Stream the matching rows, oldest first, as CSV (a spreadsheet opens it) or JSON lines."""
        names = Names(directory, principal.tenant_id)
        query = urlencode([(k, v) for k, v in request.query_params.items() if k != "format"])
        position = audit.settle()  # before recording the export: it need not wait for its own event's row
        commands.run(OwnLLM.record_audit_export, ctx, format=format, filters=query)
        if format == "csv":
            lines: Iterator[Any] = csv_export(audit.projection, where, names)
        else:
            lines = jsonl_lines(audit.scan_raw(where), names)
        media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
        filename = f"audit-{principal.tenant_id}.{format}"
        disposition = f'attachment; filename="{filename}"'
        return Stream(lines, media_type=media, headers={"Content-Disposition": disposition, POSITION: str(position)})

    @get("/subjects/{subject_id:uuid}/history", operation_id="auditSubjectHistory",
         opt={"action": Action.AUDIT_READ}, response_headers=AUDIT_HEADERS, sync_to_thread=True)  # fmt: skip
    def history(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        audit: NamedDependency[AuditReader],
        directory: NamedDependency[Directory],
        subject_id: FromPath[UUID],
        limit: Limit = DEFAULT_LIMIT,
        after: Position = None,
        before: Position = None,
    ) -> Response[list[schemas.AuditRowOut]]:
        """One user's, key's or agent's events (what was done to it and what it did), oldest first."""
        names = Names(directory, principal.tenant_id)
        where = AuditFilter(principal.tenant_id, involves=subject_id, involves_actors=names.actors_of(subject_id))
        position = audit.settle()
        page = audit.page(where, after=after, before=before, limit=limit, order="asc")
        headers = _count_headers(audit, where, position)
        links = _links(request, page, "asc", limit)
        if links:
            headers["Link"] = links
        return Response([row_out(r, names) for r in page.rows], headers=headers)


def replay_out(replayed: Replayed, tenant_id: UUID) -> schemas.ReplayOut:
    """The replayed directory as the API shows it (statuses as of the moment, expiry included)."""
    d, as_of = replayed.directory, replayed.as_of
    tenant = d.tenants.get(tenant_id)
    return schemas.ReplayOut(
        as_of=as_of, position=replayed.position, head=replayed.head, tenant=tenant_out(tenant) if tenant else None,
        users=[user_out(u) for u in d.tenant_users(tenant_id)],
        keys=[key_out(k, as_of) for k in d.tenant_keys(tenant_id)],
        agents=[agent_out(a) for a in d.tenant_agents(tenant_id)],
    )  # fmt: skip


def _count_headers(audit: AuditReader, where: AuditFilter, position: int) -> dict[str, str]:
    total, exact = audit.count(where)
    return {"X-Total-Count": str(total), "X-Total-Count-Exact": "true" if exact else "false", POSITION: str(position)}


class ReplayController(Controller):
    """Auditor replay: who had which role, key and agent at a past moment."""

    path = "/api/v1/audit/replay"
    tags = ["audit"]

    @get("/", operation_id="replayAudit", opt={"action": Action.AUDIT_READ}, sync_to_thread=True)
    def replay(
        self, principal: NamedDependency[Principal], audit: NamedDependency[AuditReader], as_of: FromQuery[datetime]
    ) -> schemas.ReplayOut:
        """The tenant's users, roles, keys and agents as of ``as_of`` (RFC 3339 with a timezone), from events only."""
        if as_of.tzinfo is None:
            raise InvalidValue("`as_of` needs a timezone (e.g. 2027-01-31T00:00:00Z)", field="as_of")
        return replay_out(audit.replay(principal.tenant_id, as_of), principal.tenant_id)


def row_out(row: AuditRow, names: Names) -> schemas.AuditRowOut:
    """A stored row with the display names of its actor and subject (as of now)."""
    e = row.entry
    return schemas.AuditRowOut(
        position=row.position, time=e.time, actor=e.actor, actor_name=names.actor(e.actor), action=e.action,
        subject_kind=e.subject_kind, subject_id=e.subject_id, subject_name=names.subject(e.subject_kind, e.subject_id),
        summary=row.summary, request_id=e.request_id,
    )  # fmt: skip


def _links(request: AnyRequest, page: Page, order: Order, limit: int) -> str:
    """``Link`` header values for the next and previous pages in the listing's order."""
    if not page.rows:
        return ""
    first, last = page.rows[0].position, page.rows[-1].position
    ahead, behind = (page.more_after, page.more_before) if order == "asc" else (page.more_before, page.more_after)
    step = ("after", "before") if order == "asc" else ("before", "after")
    links = []
    if ahead:
        links.append(f'<{_url(request, limit, step[0], last)}>; rel="next"')
    if behind:
        links.append(f'<{_url(request, limit, step[1], first)}>; rel="prev"')
    return ", ".join(links)


def _url(request: AnyRequest, limit: int, cursor: str, position: int) -> str:
    query: list[tuple[str, Any]] = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("after", "before", "limit")
    ]
    query += [("limit", str(limit)), (cursor, str(position))]
    return str(request.url.with_replacements(query=urlencode(query)))
