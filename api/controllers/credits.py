"""Prepaid credits for the billing role and admins: balance and lots, movements (keyset pages), CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Stream

from api.guards import AnyRequest
from api.pagination import DEFAULT_LIMIT, PAGE_HEADERS, Limit
from api.principal import Principal
from domain.permissions import Action
from policies.prices import cents_floor
from projections.credit_view import CreditProjection, MovementRow

After = Annotated[int, QueryParameter(ge=0, description="Position of the last movement of the previous page.")]
CSV_COLUMNS = ("position", "at", "kind", "amount_micro_cents", "lot_id", "usage_request_id", "model",
               "price_version", "shortfall_micro_cents")  # fmt: skip
EXPORT_PAGE = 5_000


class LotOut(msgspec.Struct):
    lot_id: UUID
    payment_id: str
    amount_cents: int
    purchased_at: datetime
    expires_at: datetime
    remaining_micro_cents: int
    state: str  # open, expired, refunded, forfeited


class CreditsOut(msgspec.Struct):
    balance_cents: int  # whole cents the unexpired lots hold now (the rest of a cent stays in the ledger)
    balance_micro_cents: int
    currency: str
    lots: list[LotOut]


class MovementOut(msgspec.Struct):
    position: int
    at: datetime
    kind: str  # purchase, debit, expiry, refund, forfeit
    amount_micro_cents: int
    lot_id: UUID | None
    usage_request_id: str
    model: str
    price_version: int | None
    shortfall_micro_cents: int


def movement_out(m: MovementRow) -> MovementOut:
    return MovementOut(m.position, m.at, m.kind, m.amount_micro, m.lot_id, m.usage_request_id, m.model,
                       m.price_version, m.shortfall_micro)  # fmt: skip


class CreditController(Controller):
    """Amounts in integer micro-cents (1 cent = 1,000,000), USD; lots are bought in cents."""

    path = "/api/v1/billing/credits"
    tags = ["billing"]

    @get("/", operation_id="getCredits", opt={"action": Action.CREDITS_READ}, sync_to_thread=True)
    def credits(
        self, principal: NamedDependency[Principal], credits: NamedDependency[CreditProjection],
        now: NamedDependency[datetime],
    ) -> CreditsOut:  # fmt: skip
        """The balance (expired lots excluded at this instant) and every lot, oldest first."""
        balance = credits.balance(principal.tenant_id, now)
        lots = [LotOut(r.lot_id, r.payment_id, r.amount_cents, r.purchased_at, r.expires_at, r.remaining_micro, r.state)
                for r in credits.lots(principal.tenant_id)]  # fmt: skip
        return CreditsOut(cents_floor(balance), balance, "usd", lots)

    @get("/movements", operation_id="listCreditMovements", opt={"action": Action.CREDITS_READ},
         response_headers=PAGE_HEADERS, sync_to_thread=True)  # fmt: skip
    def movements(
        self, request: AnyRequest, principal: NamedDependency[Principal],
        credits: NamedDependency[CreditProjection], limit: Limit = DEFAULT_LIMIT, after: After = 0,
    ) -> Response[list[MovementOut]]:  # fmt: skip
        """Purchases, debits, expiries, refunds and forfeits, oldest first; ``Link`` names the next page."""
        rows = credits.movements(principal.tenant_id, after, limit + 1)
        headers = {"X-Total-Count": str(credits.count_movements(principal.tenant_id))}
        if len(rows) > limit:
            rows = rows[:limit]
            query = urlencode({"limit": limit, "after": rows[-1].position})
            headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
        return Response([movement_out(r) for r in rows], headers=headers)

    @get("/movements/export", operation_id="exportCreditMovements", opt={"action": Action.CREDITS_READ},
         sync_to_thread=True)  # fmt: skip
    def export(self, principal: NamedDependency[Principal], credits: NamedDependency[CreditProjection]) -> Stream:
        """Every movement as CSV for an accountant, oldest first (read in keyset pages, streamed)."""
        filename = f"credit-movements-{principal.tenant_id}.csv"
        return Stream(
            _csv(credits, principal.tenant_id),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )


def _csv(credits: CreditProjection, tenant_id: UUID) -> Iterator[bytes]:
    """The header, then one line per movement; one query per page of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    after = 0
    while True:
        rows = credits.movements(tenant_id, after, EXPORT_PAGE)
        for m in rows:
            values: list[Any] = [m.position, m.at.isoformat(), m.kind, m.amount_micro, m.lot_id or "",
                                 m.usage_request_id, m.model, "" if m.price_version is None else m.price_version,
                                 m.shortfall_micro]  # fmt: skip
            writer.writerow(values)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < EXPORT_PAGE:
            return
        after = rows[-1].position
