"""Compliance: what oversight roles do that the trail must itself remember."""

from __future__ import annotations

from uuid import UUID

from domain.audit_export import EXPORT_FORMATS, MAX_FILTER_CHARS, AuditExport
from domain.commands.base import Commands
from domain.context import Ctx
from domain.errors import InvalidValue


def check_export(format: str, filters: str) -> None:
    """A known format and a bounded description of the query."""
    if format not in EXPORT_FORMATS:
        raise InvalidValue(f"format must be one of {', '.join(sorted(EXPORT_FORMATS))}", "format")
    if len(filters) > MAX_FILTER_CHARS:
        raise InvalidValue(f"filters longer than {MAX_FILTER_CHARS} characters", "filters")


class ComplianceCommands(Commands):
    """Audit exports (later: retention holds, erasure requests)."""

    def record_audit_export(self, ctx: Ctx, *, format: str, filters: str) -> UUID:
        """Remember that ``ctx.actor`` exported the rows ``filters`` selects; once per request."""
        check_export(format, filters)
        self._tenant(ctx.tenant_id)
        export_id = AuditExport.create_id(ctx.tenant_id, ctx.request_id)
        if self._get(export_id) is None:
            export = AuditExport(tenant_id=ctx.tenant_id, format=format, filters=filters, actor=ctx.actor,
                                 request_id=ctx.request_id)  # fmt: skip
            self._save(export)
        return export_id
