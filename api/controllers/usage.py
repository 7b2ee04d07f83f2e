"""Usage for the dashboard: tokens and requests per day, model, user and key."""

from __future__ import annotations

from datetime import date

from litestar import Controller, get
from litestar.params import FromQuery

from api import schemas
from api.guards import AnyRequest, can, principal_of, services_of
from domain.errors import PermissionDenied
from domain.permissions import Action


class UsageController(Controller):
    """Counts only: no content is ever recorded."""

    path = "/api/v1/usage"
    tags = ["usage"]

    @get("/", operation_id="getUsage", opt={"action": Action.USAGE_OWN}, sync_to_thread=False)
    def usage(
        self,
        request: AnyRequest,
        since: FromQuery[date | None] = None,
        until: FromQuery[date | None] = None,
        all_users: FromQuery[bool] = False,
    ) -> list[schemas.UsageRowOut]:
        """The caller's usage; ``?all_users=true`` the tenant's (admin, billing)."""
        principal = principal_of(request)
        if all_users and not can(request, Action.USAGE_TENANT):
            raise PermissionDenied("tenant-wide usage needs the admin or billing role")
        rows = services_of(request).usage.query(
            principal.tenant_id, user_id=None if all_users else principal.user_id, since=since, until=until
        )
        return [
            schemas.UsageRowOut(
                r.day, r.model, r.user_id, r.key_id, r.requests, r.prompt_tokens, r.completion_tokens,
                r.duration_ms, r.by_status,
            )
            for r in rows
        ]  # fmt: skip
