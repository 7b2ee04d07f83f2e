"""Usage for the dashboard: tokens and requests per day, model, user and key."""

from __future__ import annotations

from datetime import date

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from api import schemas
from api.principal import Principal
from domain.authorization import USAGE, whose_rows
from domain.permissions import Action
from projections.usage_view import UsageProjection


class UsageController(Controller):
    """Counts only: no content is ever recorded."""

    path = "/api/v1/usage"
    tags = ["usage"]

    @get("/", operation_id="getUsage", opt={"action": Action.USAGE_OWN}, sync_to_thread=False)
    def usage(
        self,
        principal: NamedDependency[Principal],
        usage: NamedDependency[UsageProjection],
        since: FromQuery[date | None] = None,
        until: FromQuery[date | None] = None,
        all_users: FromQuery[bool] = False,
    ) -> list[schemas.UsageRowOut]:
        """The caller's usage; ``?all_users=true`` the tenant's (admin, billing)."""
        user_id = whose_rows(principal.caller, USAGE, all_users=all_users)
        rows = usage.query(principal.tenant_id, user_id=user_id, since=since, until=until)
        return [
            schemas.UsageRowOut(
                r.day, r.model, r.user_id, r.key_id, r.requests, r.prompt_tokens, r.completion_tokens,
                r.duration_ms, r.by_status,
            )
            for r in rows
        ]  # fmt: skip
