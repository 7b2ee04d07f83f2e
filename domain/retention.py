"""The end of a legal retention period, recorded once per tenant and fiscal year (``policies/retention.py``).

``BillingRetention.Ended``: the seller's retention of a fiscal year's billing records is over; the keys that
sealed that year's billing contact are destroyed (crypto-shredding), so the contact reads ``<erased>``
on that year's invoices while amounts, dates and numbers stay in clear. ``ActivityRetention.Ended``:
a terminated tenant's activity records (audit rows, usage counts) have outlived the retention of the
tenant's jurisdiction, and the read models holding them purge them. Both carry ids, years and
instants only; their ids are the uuid5 of (tenant, year), so a second sweep records nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidState
from domain.ids import NAMESPACE


class NotOver(InvalidState):
    """The retention period has not ended yet."""


def check_over(retained_until: datetime, now: datetime) -> None:
    """Refuse to end a retention a second before its instant."""
    if now < retained_until:
        raise NotOver(f"retention lasts until {retained_until.isoformat()}")


class BillingRetention(Aggregate):
    """One tenant's billing records of one fiscal year, past their retention."""

    class Ended(Aggregate.Created):
        tenant_id: UUID
        fiscal_year: int
        jurisdiction: str  # the seller's
        subject_ids: list[UUID]  # the billing-contact keys destroyed
        retained_until: datetime
        ended_at: datetime
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, fiscal_year: int, **_: Any) -> UUID:
        """One end per tenant and fiscal year."""
        return uuid5(NAMESPACE, f"billing-retention:{tenant_id}:{fiscal_year}")

    @event(Ended)
    def __init__(
        self, tenant_id: UUID, fiscal_year: int, jurisdiction: str, subject_ids: list[UUID], retained_until: datetime,
        ended_at: datetime, actor: str, request_id: str,
    ) -> None:  # fmt: skip
        check_over(retained_until, ended_at)
        self.tenant_id = tenant_id
        self.fiscal_year = fiscal_year
        self.jurisdiction = jurisdiction
        self.subject_ids = list(subject_ids)


class ActivityRetention(Aggregate):
    """A terminated tenant's activity records, past the retention of its last fiscal year."""

    class Ended(Aggregate.Created):
        tenant_id: UUID
        fiscal_year: int  # the tenant's last fiscal year with activity (that of its erasure)
        jurisdiction: str  # the tenant's
        retained_until: datetime
        ended_at: datetime
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, **_: Any) -> UUID:
        """One end per tenant: its activity goes as a whole."""
        return uuid5(NAMESPACE, f"activity-retention:{tenant_id}")

    @event(Ended)
    def __init__(
        self, tenant_id: UUID, fiscal_year: int, jurisdiction: str, retained_until: datetime, ended_at: datetime,
        actor: str, request_id: str,
    ) -> None:  # fmt: skip
        check_over(retained_until, ended_at)
        self.tenant_id = tenant_id
        self.fiscal_year = fiscal_year
        self.jurisdiction = jurisdiction
