"""Retention by law: the tenant's jurisdiction, the billing contact carried into each fiscal year, and the ends.

Billing records follow the SELLER's jurisdiction (``seller_jurisdiction``: the accounting duty is the
operator's); activity records (audit, usage) follow the TENANT's (``Tenant.JurisdictionSet``, else
``default_jurisdiction``). See ``policies/retention.py`` for the table and its sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from domain.billing_account import billing_contact_subject_id, billing_subject_id
from domain.commands.billing_accounts import BillingAccountCommands
from domain.context import SYSTEM, Ctx
from domain.errors import InvalidState, InvalidValue
from domain.retention import ActivityRetention, BillingRetention
from domain.sealing import KeyStore
from domain.tenant import Tenant
from policies.retention import Records, fiscal_year, fiscal_year_retained_until


class RetentionCommands(BillingAccountCommands):
    """Jurisdiction per tenant; the sweeper's carry-forward and retention ends (each idempotent)."""

    keys: KeyStore
    default_jurisdiction: str = "FR"  # a tenant's until its admin sets one (set from settings by the API)

    def set_jurisdiction(self, ctx: Ctx, jurisdiction: str) -> str:
        """Set whose law keeps the tenant's activity records (ISO 3166-1 alpha-2); the code in force."""
        tenant = self._tenant(ctx.tenant_id)
        tenant.check_active()
        if tenant.set_jurisdiction(ctx, jurisdiction):
            self._save(tenant)
        return tenant.jurisdiction

    def jurisdiction_of(self, tenant: Tenant) -> str:
        """The tenant's jurisdiction, or the operator's default when it set none."""
        return tenant.jurisdiction or self.default_jurisdiction

    def carry_billing_contact(self, tenant_id: UUID, now: datetime) -> bool:
        """Seal a live tenant's billing contact under the fiscal year of ``now``; False when nothing to do."""
        tenant = self._get(tenant_id)
        if not isinstance(tenant, Tenant) or tenant.terminated:
            return False  # a terminated tenant's contact stays in its last year, and goes with it
        ctx = Ctx(SYSTEM, tenant_id, f"sweep-carry-{tenant_id}-{fiscal_year(now)}")
        changed = self.carry_contact_forward(ctx, now)
        if changed:
            self._save(*changed)
        return bool(changed)

    def end_billing_retention(self, tenant_id: UUID, year: int, subject_ids: Sequence[UUID], now: datetime) -> bool:
        """Destroy the billing-contact keys of fiscal year ``year`` once its retention is over; once per year."""
        if self._get(BillingRetention.create_id(tenant_id, year)) is not None:
            return False
        allowed = {billing_contact_subject_id(tenant_id, year), billing_subject_id(tenant_id)}
        if not set(subject_ids) <= allowed:
            raise InvalidValue("only the tenant's billing-contact keys end with its billing retention", "subject_ids")
        self._check_not_in_force(tenant_id, subject_ids)
        until = fiscal_year_retained_until(self.seller_jurisdiction, year, Records.BILLING)
        record = BillingRetention(
            tenant_id=tenant_id, fiscal_year=year, jurisdiction=self.seller_jurisdiction, subject_ids=list(subject_ids),
            retained_until=until, ended_at=now, actor=SYSTEM, request_id=f"sweep-billing-retention-{tenant_id}-{year}",
        )  # fmt: skip
        # (the constructor raises NotOver a second early, before any key is touched)
        for subject_id in subject_ids:
            self.keys.destroy(subject_id)  # crypto-shredding; a crash before the save is healed by the next sweep
        self._save(record)
        return True

    def end_activity_retention(self, tenant_id: UUID, year: int, now: datetime) -> bool:
        """Record that a terminated tenant's activity records (up to fiscal ``year``) may go; once per tenant."""
        if self._get(ActivityRetention.create_id(tenant_id)) is not None:
            return False
        tenant = self._tenant(tenant_id)
        if not tenant.terminated:
            raise InvalidState("only a terminated tenant's activity records end")
        jurisdiction = self.jurisdiction_of(tenant)
        until = fiscal_year_retained_until(jurisdiction, year, Records.ACTIVITY)
        record = ActivityRetention(
            tenant_id=tenant_id, fiscal_year=year, jurisdiction=jurisdiction, retained_until=until, ended_at=now,
            actor=SYSTEM, request_id=f"sweep-activity-retention-{tenant_id}",
        )  # fmt: skip
        self._save(record)
        return True

    def _check_not_in_force(self, tenant_id: UUID, subject_ids: Sequence[UUID]) -> None:
        """A live tenant's contact in force is carried forward, never destroyed."""
        account = self.billing_account(tenant_id)
        tenant = self._get(tenant_id)
        if account is None or (isinstance(tenant, Tenant) and tenant.terminated):
            return
        if billing_contact_subject_id(tenant_id, account.fiscal_year) in subject_ids:
            raise InvalidState("the billing contact in force is sealed with this key: carry it forward first")
