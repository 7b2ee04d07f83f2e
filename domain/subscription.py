"""A tenant's plan subscription: started, upgraded now, changed or cancelled at the period's end, renewed.

One per tenant (uuid5 of the tenant); after it ended, subscribing again starts a new term on the
same aggregate. Renewals may come from Stripe's webhooks or from the sweeper at the period's end,
in any order and more than once: a renewal counts only when it reaches a later cycle (its end more
than :data:`SAME_CYCLE` past ours), so the two sources never renew twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue
from domain.ids import NAMESPACE
from policies import plans

SAME_CYCLE = timedelta(days=1)  # two period ends closer than this are the same cycle (Stripe's vs ours)


def subscription_id(tenant_id: UUID) -> UUID:
    """A tenant's subscription id."""
    return uuid5(NAMESPACE, f"subscription:{tenant_id}")


def check_plan(plan: str, interval: str) -> tuple[str, plans.Interval]:
    """A known plan and interval, or :class:`InvalidValue` naming the field."""
    if plan not in plans.PLANS:
        raise InvalidValue(f"unknown plan '{plan}'; one of: {', '.join(plans.PLANS)}", "plan")
    if interval not in plans.INTERVALS:
        raise InvalidValue(f"unknown interval '{interval}'; one of: {', '.join(plans.INTERVALS)}", "interval")
    return plan, interval  # type: ignore[return-value]


class Subscription(Aggregate):
    """Charged in advance; access follows ``plan`` while not ended (the directory's ``TenantView.plan``)."""

    class Started(Aggregate.Created):
        tenant_id: UUID
        plan: str
        interval: str
        period_start: datetime
        period_end: datetime
        stripe_subscription_id: str
        actor: str
        request_id: str

    class Restarted(Aggregate.Event):
        tenant_id: UUID
        plan: str
        interval: str
        period_start: datetime
        period_end: datetime
        stripe_subscription_id: str
        actor: str
        request_id: str

    class Upgraded(Aggregate.Event):
        """Effective at once; ``charged_cents`` (the price difference, not prorated) is invoiced now."""

        tenant_id: UUID
        from_plan: str
        plan: str
        charged_cents: int
        currency: str
        actor: str
        request_id: str

    class ChangeScheduled(Aggregate.Event):
        """A downgrade or interval change, effective at the period's end."""

        tenant_id: UUID
        plan: str
        interval: str
        effective_at: datetime
        actor: str
        request_id: str

    class CancellationScheduled(Aggregate.Event):
        """Access continues until ``effective_at``, the end of the paid cycle."""

        tenant_id: UUID
        effective_at: datetime
        actor: str
        request_id: str

    class Renewed(Aggregate.Event):
        tenant_id: UUID
        plan: str
        interval: str
        period_start: datetime
        period_end: datetime
        actor: str
        request_id: str

    class Ended(Aggregate.Event):
        tenant_id: UUID
        ended_at: datetime
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, **_: object) -> UUID:
        """See :func:`subscription_id`."""
        return subscription_id(tenant_id)

    @event(Started)
    def __init__(
        self, tenant_id: UUID, plan: str, interval: str, period_start: datetime, period_end: datetime,
        stripe_subscription_id: str, actor: str, request_id: str,
    ) -> None:  # fmt: skip
        self.tenant_id = tenant_id
        self._start(plan, interval, period_start, period_end, stripe_subscription_id)

    def _start(self, plan: str, interval: str, start: datetime, end: datetime, stripe_id: str) -> None:
        self.plan, self.interval, self.period_start, self.period_end = plan, interval, start, end
        self.stripe_subscription_id = stripe_id
        self.status = "active"  # active, ending (cancellation scheduled), ended
        self.pending: tuple[str, str] | None = None

    @property
    def ended(self) -> bool:
        """No plan any more (the tenant is back on the default plan)."""
        return self.status == "ended"

    def check_current(self) -> None:
        """Plan changes need a live subscription without a scheduled cancellation."""
        if self.status != "active":
            raise InvalidState(f"the subscription is {self.status}")

    def restart(self, ctx: Ctx, plan: str, interval: str, start: datetime, end: datetime, stripe_id: str) -> None:
        """Subscribe again after the last term ended."""
        if not self.ended:
            raise InvalidState("the tenant already has a subscription; upgrade, downgrade or cancel it")
        self._restarted(
            tenant_id=self.tenant_id, plan=plan, interval=interval, period_start=start, period_end=end,
            stripe_subscription_id=stripe_id, actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip

    def upgrade(self, ctx: Ctx, plan: str) -> int:
        """Move to a higher plan now; returns the difference charged now (see ``policies/plans.py``)."""
        self.check_current()
        check_plan(plan, self.interval)
        if not plans.is_upgrade(self.plan, plan):
            raise InvalidValue(f"{plan} is not above {self.plan}; downgrades take effect at the period's end", "plan")
        charged = plans.upgrade_charge_cents(self.plan, plan, self.interval)  # type: ignore[arg-type]
        self._upgraded(
            tenant_id=self.tenant_id, from_plan=self.plan, plan=plan, charged_cents=charged,
            currency=plans.CURRENCY, actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip
        return charged

    def schedule_change(self, ctx: Ctx, plan: str, interval: str) -> None:
        """A downgrade or interval change, from the next cycle on."""
        self.check_current()
        check_plan(plan, interval)
        if plan == self.plan and interval == self.interval:
            raise InvalidState(f"the subscription is already {plan} ({interval})")
        if plans.is_upgrade(self.plan, plan) and interval == self.interval:
            raise InvalidValue("an upgrade takes effect now: use the upgrade", "plan")
        self._change_scheduled(
            tenant_id=self.tenant_id, plan=plan, interval=interval, effective_at=self.period_end,
            actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip

    def cancel(self, ctx: Ctx) -> None:
        """Cancel at the end of the current cycle; access continues until then. Not refundable."""
        self.check_current()
        self._cancellation_scheduled(
            tenant_id=self.tenant_id, effective_at=self.period_end, actor=ctx.actor, request_id=ctx.request_id
        )

    def renew(self, ctx: Ctx, start: datetime, end: datetime) -> bool:
        """Enter the cycle ``start``-``end`` unless it is ours or older; a pending change applies now."""
        if self.status != "active" or end - self.period_end <= SAME_CYCLE:
            return False
        plan, interval = self.pending or (self.plan, self.interval)
        self._renewed(
            tenant_id=self.tenant_id, plan=plan, interval=interval, period_start=start, period_end=end,
            actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip
        return True

    def next_period(self) -> tuple[datetime, datetime]:
        """The cycle after the current one, as we compute it (Stripe anchors the same way)."""
        _, interval = self.pending or (self.plan, self.interval)
        return self.period_end, plans.period_end(self.period_end, 1, interval)  # type: ignore[arg-type]

    def end(self, ctx: Ctx, at: datetime) -> bool:
        """The subscription is over (cancellation reached, or Stripe deleted it); False when already ended."""
        if self.ended:
            return False
        self._ended(tenant_id=self.tenant_id, ended_at=at, actor=ctx.actor, request_id=ctx.request_id)
        return True

    def due(self, ctx: Ctx, now: datetime) -> bool:
        """What time alone does: end a cancelled subscription or renew a live one at the period's end."""
        if self.ended or now < self.period_end:
            return False
        if self.status == "ending":
            return self.end(ctx, self.period_end)
        return self.renew(ctx, *self.next_period())

    @event(Restarted)
    def _restarted(
        self, tenant_id: UUID, plan: str, interval: str, period_start: datetime, period_end: datetime,
        stripe_subscription_id: str, actor: str, request_id: str,
    ) -> None:  # fmt: skip
        self._start(plan, interval, period_start, period_end, stripe_subscription_id)

    @event(Upgraded)
    def _upgraded(
        self, tenant_id: UUID, from_plan: str, plan: str, charged_cents: int, currency: str, actor: str,
        request_id: str,
    ) -> None:  # fmt: skip
        self.plan = plan
        self.pending = None

    @event(ChangeScheduled)
    def _change_scheduled(
        self, tenant_id: UUID, plan: str, interval: str, effective_at: datetime, actor: str, request_id: str
    ) -> None:
        self.pending = (plan, interval)

    @event(CancellationScheduled)
    def _cancellation_scheduled(self, tenant_id: UUID, effective_at: datetime, actor: str, request_id: str) -> None:
        self.status = "ending"

    @event(Renewed)
    def _renewed(
        self, tenant_id: UUID, plan: str, interval: str, period_start: datetime, period_end: datetime, actor: str,
        request_id: str,
    ) -> None:  # fmt: skip
        self.plan, self.interval, self.period_start, self.period_end = plan, interval, period_start, period_end
        self.pending = None

    @event(Ended)
    def _ended(self, tenant_id: UUID, ended_at: datetime, actor: str, request_id: str) -> None:
        self.status = "ended"
        self.pending = None
