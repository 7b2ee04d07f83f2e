"""Changes to our terms: the notice a material change needs, acceptance by continued use, and the refund
owed to a customer who rejects the change (OwnLLM terms §18).

Pure rules taking ``now``; the domain records the facts (published, accepted, rejected) and the billing
side pays the refund.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Terms §18: "at least 30 days before it takes effect". The same period applies to the privacy
# policy (§7) and to a new sub-processor under the DPA (§4).
MATERIAL_CHANGE_NOTICE = timedelta(days=30)


class NoticeTooShort(ValueError):
    """A material change would take effect before its notice period has run."""


def earliest_effective_at(published_at: datetime, material: bool) -> datetime:
    """The first instant a change published at ``published_at`` may take effect."""
    return published_at + MATERIAL_CHANGE_NOTICE if material else published_at


def check_notice(published_at: datetime, effective_at: datetime, material: bool) -> None:
    """Refuse a material change that gives less than the notice period (a non-material one may apply at once)."""
    earliest = earliest_effective_at(published_at, material)
    if effective_at < earliest:
        raise NoticeTooShort(
            f"a material change needs {MATERIAL_CHANGE_NOTICE.days} days' notice: "
            f"effective_at must be {earliest.isoformat()} or later"
        )


def in_notice_period(published_at: datetime, effective_at: datetime, now: datetime) -> bool:
    """Whether ``now`` lies in the window where a customer may reject the change and leave without penalty."""
    return published_at <= now < effective_at


def accepted_by_use(effective_at: datetime, used_at: datetime) -> bool:
    """Terms §18: using the service on or after the effective date is acceptance."""
    return used_at >= effective_at


def prorata_refund_cents(paid_cents: int, period_start: datetime, period_end: datetime, terminated_at: datetime) -> int:
    """The prepaid fees for the time after ``terminated_at``, pro rata temporis, in whole cents.

    Formula: ``paid * (period_end - terminated_at) / (period_end - period_start)``, computed on
    whole seconds in integers and rounded DOWN to the cent (the customer never gets more than the
    unused share; the difference is below one cent). Zero when terminated at or after the end, the
    whole amount when terminated at or before the start.
    """
    if paid_cents < 0:
        raise ValueError("paid_cents must not be negative")
    if period_end <= period_start:
        raise ValueError("the period must end after it starts")
    total = int((period_end - period_start).total_seconds())
    clamped = min(max(terminated_at, period_start), period_end)
    unused = int((period_end - clamped).total_seconds())
    return paid_cents * unused // total
