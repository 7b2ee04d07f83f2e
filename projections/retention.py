"""What the retention sweep asks, in memory in every process: which billing-contact keys seal which fiscal
years, whose contact must be carried into the new year, and which retentions are over.

A billing-contact key seals the contact of one fiscal year (``BillingAccount.Opened/Updated`` and
``ContactCarriedForward`` name it); invoices issued while it is in force show that contact. Its
LAST year is the latest fiscal year of any of those records (an invoice issued late in the next
year under the old key moves it on); the key goes when the seller's retention of that year is over,
never while it seals a live tenant's contact in force. Contacts sealed before per-year keys (the
account's own key, ``fiscal_year`` 0) are dated by their event's timestamp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.billing_account import BillingAccount
from domain.deletion import Deletion
from domain.invoice import Invoice
from domain.retention import ActivityRetention, BillingRetention
from domain.tenant import Tenant
from policies.retention import Records, fiscal_year, fiscal_year_retention_ended
from projections.log import topics_of


@dataclass(frozen=True, slots=True)
class BillingYearDue:
    """A tenant's fiscal year whose billing retention is over, and the contact keys that go with it."""

    tenant_id: UUID
    fiscal_year: int
    subject_ids: list[UUID]


@dataclass(slots=True)
class TenantRetention:
    """A tenant's contact in force and its standing."""

    contact: UUID | None = None  # the key sealing the billing contact in force
    contact_year: int = 0
    jurisdiction: str = ""
    terminated_at: datetime | None = None
    last_activity: datetime | None = None  # the latest of termination, erasure deadline and erasures


@dataclass
class RetentionView:
    """See the module docstring."""

    tenants: dict[UUID, TenantRetention] = field(default_factory=dict)
    key_years: dict[UUID, tuple[UUID, int]] = field(default_factory=dict)  # key -> (tenant, its last fiscal year)
    billing_ended: set[tuple[UUID, int]] = field(default_factory=set)
    activity_ended: set[UUID] = field(default_factory=set)
    topics: ClassVar[tuple[str, ...]]

    def process(self, event: Any) -> None:
        """Apply one domain event."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def contacts_to_carry(self, now: datetime) -> list[UUID]:
        """Live tenants whose billing contact is sealed under a fiscal year before that of ``now``."""
        year = fiscal_year(now)
        return [t for t, r in list(self.tenants.items())
                if r.contact is not None and r.terminated_at is None and r.contact_year < year]  # fmt: skip

    def billing_due(self, seller: str, now: datetime) -> list[BillingYearDue]:
        """Every (tenant, fiscal year) whose billing retention is over at ``now`` and not yet ended."""
        years: dict[tuple[UUID, int], list[UUID]] = {}
        for subject_id, (tenant_id, year) in list(self.key_years.items()):
            if (tenant_id, year) in self.billing_ended or not fiscal_year_retention_ended(seller, year, now):
                continue
            standing = self.tenants.get(tenant_id)
            if standing is not None and standing.terminated_at is None and standing.contact == subject_id:
                continue  # in force: carried forward first, never destroyed
            years.setdefault((tenant_id, year), []).append(subject_id)
        return [BillingYearDue(t, y, sorted(s, key=str)) for (t, y), s in sorted(years.items(), key=str)]

    def activity_due(self, default_jurisdiction: str, now: datetime) -> list[tuple[UUID, int]]:
        """Terminated tenants whose last fiscal year's activity retention is over at ``now``: (tenant, year)."""
        due = []
        for tenant_id, standing in list(self.tenants.items()):
            if standing.last_activity is None or tenant_id in self.activity_ended:
                continue
            year = fiscal_year(standing.last_activity)
            jurisdiction = standing.jurisdiction or default_jurisdiction
            if fiscal_year_retention_ended(jurisdiction, year, now, Records.ACTIVITY):
                due.append((tenant_id, year))
        return due

    def _use(self, subject_id: UUID, tenant_id: UUID, year: int) -> None:
        _, last = self.key_years.get(subject_id, (tenant_id, year))
        self.key_years[subject_id] = (tenant_id, max(last, year))

    def _later(self, tenant_id: UUID, at: datetime) -> None:
        standing = self.tenants.setdefault(tenant_id, TenantRetention())
        standing.last_activity = at if standing.last_activity is None else max(standing.last_activity, at)


def _contact(v: RetentionView, e: Any) -> None:
    year = e.fiscal_year or fiscal_year(e.timestamp)
    subject_id = e.name.subject_id
    v._use(subject_id, e.tenant_id, year)
    standing = v.tenants.setdefault(e.tenant_id, TenantRetention())
    standing.contact, standing.contact_year = subject_id, e.fiscal_year


def _invoice(v: RetentionView, e: Invoice.Issued) -> None:
    standing = v.tenants.get(e.tenant_id)
    if standing is not None and standing.contact is not None:
        v._use(standing.contact, e.tenant_id, fiscal_year(e.issued_at))


def _jurisdiction(v: RetentionView, e: Tenant.JurisdictionSet) -> None:
    v.tenants.setdefault(e.originator_id, TenantRetention()).jurisdiction = e.jurisdiction


def _terminated(v: RetentionView, e: Tenant.Terminated) -> None:
    v.tenants.setdefault(e.originator_id, TenantRetention()).terminated_at = e.terminated_at
    v._later(e.originator_id, max(e.terminated_at, e.erase_by))


def _erased(v: RetentionView, e: Deletion.SubjectErased) -> None:
    standing = v.tenants.get(e.tenant_id)
    if standing is not None and standing.terminated_at is not None:
        v._later(e.tenant_id, e.erased_at)


def _billing_ended(v: RetentionView, e: BillingRetention.Ended) -> None:
    v.billing_ended.add((e.tenant_id, e.fiscal_year))


def _activity_ended(v: RetentionView, e: ActivityRetention.Ended) -> None:
    v.activity_ended.add(e.tenant_id)


_HANDLERS: dict[type, Callable[[RetentionView, Any], None]] = {
    BillingAccount.Opened: _contact,
    BillingAccount.Updated: _contact,
    BillingAccount.ContactCarriedForward: _contact,
    Invoice.Issued: _invoice,
    Tenant.JurisdictionSet: _jurisdiction,
    Tenant.Terminated: _terminated,
    Deletion.SubjectErased: _erased,
    BillingRetention.Ended: _billing_ended,
    ActivityRetention.Ended: _activity_ended,
}
RetentionView.topics = topics_of(_HANDLERS)
