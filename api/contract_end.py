"""When a contract ends: credits are forfeited on termination, and rejecting new terms terminates (terms §16, §18).

Reactions (tracked handlers, exactly once with their commands), plus the billing figures the refund of a
rejection is computed from.
"""

from __future__ import annotations

from typing import Any

from domain.application import OwnLLM
from domain.commands.terms import PrepaidPeriod
from domain.context import SYSTEM, Ctx
from domain.tenant import Tenant
from domain.terms import TermsAnswer
from projections.billing_view import BillingView
from projections.log import topics_of


class ForfeitCreditsOnTermination:
    """Terms §16: unused prepaid credits are forfeited when the account is terminated."""

    name = "forfeit-on-termination"
    topics = topics_of([Tenant.Terminated])

    def __init__(self, app: OwnLLM) -> None:
        self.app = app

    def handle(self, event: Any, position: int) -> None:
        """Forfeit what remains (nothing when the tenant never bought credits)."""
        self.app.forfeit_credits(event.tenant_id, event.terminated_at, SYSTEM, f"terminated:{event.originator_id}")


class TerminateOnRejectedTerms:
    """Terms §18: a customer who rejects a change during its notice period leaves without penalty, now."""

    name = "terminate-on-rejected-terms"
    topics = topics_of([TermsAnswer.Rejected])

    def __init__(self, app: OwnLLM) -> None:
        self.app = app

    def handle(self, event: Any, position: int) -> None:
        """End the contract; the refund due is on the rejection itself."""
        tenant: Any = self.app.repository.get(event.tenant_id)
        if getattr(tenant, "terminated", False):
            return
        ctx = Ctx(actor=SYSTEM, tenant_id=event.tenant_id, request_id=f"rejected:{event.originator_id}")
        reason = f"{event.document}-{event.version} rejected in its notice period (terms §18)"
        self.app.terminate_tenant(ctx, reason)


def prepaid_fees(billing: BillingView) -> Any:
    """What a tenant paid in advance for its current subscription period (paid invoices issued within it)."""

    def period_of(tenant_id: Any) -> PrepaidPeriod | None:
        subscription = billing.subscriptions.get(tenant_id)
        if subscription is None or subscription.status == "ended":
            return None
        start, end = subscription.period_start, subscription.period_end
        paid = [i for i in billing.tenant_invoices(tenant_id) if i.paid_at and start <= i.issued_at < end]
        if not paid:
            return None
        return PrepaidPeriod(sum(i.total_cents for i in paid), paid[0].currency.upper(), start, end)

    return period_of
