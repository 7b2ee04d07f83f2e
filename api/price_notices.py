"""Price-change notices (LibrePartner terms: token prices change with notice, from the date the notice gives):
a sweep task that hands the credit read model's pending notices to the e-mail outbox, once each."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from api.outbox import generic_notice
from api.outbox.reaction import recipients
from api.services import Services
from projections.credit_view import NoticeRow

MICRO_CENTS_PER_DOLLAR = 100 * 1_000_000


def dollars(micro_cents: int) -> str:
    """Micro-cents as exact dollars, e.g. 50_000_000 -> "$0.50"."""
    return f"${Decimal(micro_cents) / MICRO_CENTS_PER_DOLLAR:.2f}"


def price_change_mail(row: NoticeRow) -> tuple[str, str]:
    """Subject and body: the model, the new prices and the date they take effect."""
    body = (
        f"The price of the model {row.model} changes on {row.effective_at:%Y-%m-%d %H:%M %Z}: "
        f"{dollars(row.input_per_million)} per million input tokens and {dollars(row.output_per_million)} per "
        "million output tokens. Requests made before that date are charged at the current price.\n"
    )
    return f"OwnLLM: {row.model} price change on {row.effective_at:%Y-%m-%d}", body


class PriceNotices:
    """Queues each pending price-change notice to the tenant's admins, then marks it sent (idempotent by key)."""

    name = "price-notices"

    def __init__(self, services: Services) -> None:
        self.services = services

    def run(self, now: datetime) -> int:
        """How many notices were handed over (0 without the credit view or the outbox in this process)."""
        view, outbox = self.services.credit_view, self.services.outbox
        if view is None or outbox is None:
            return 0
        rows = view.pending_notices(100)
        for row in rows:
            subject, body = price_change_mail(row)
            for user_id in recipients(self.services.directory, row.tenant_id):
                key = f"price:{row.position}:{row.tenant_id}:{user_id}"
                outbox.queue(generic_notice(key, subject, body, tenant_id=row.tenant_id, to_user=user_id))
        if rows:
            view.mark_sent([(row.position, row.tenant_id) for row in rows], now)
        return len(rows)
