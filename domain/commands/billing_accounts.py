"""The tenant's billing account: whom invoices go to, its contact sealed per fiscal year, its Stripe customer.

The billed party's personal data is sealed with the key of the tenant's fiscal year in force
(:func:`domain.billing_account.billing_contact_subject_id`, the seller's financial year) and carried
into each new year before that year's first invoice (and by the sweeper at the year's start), so an
old year's key can be destroyed when its retention ends while the contact in force stays readable.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.billing_account import (
    BillingAccount,
    StripeCustomer,
    billing_account_id,
    billing_contact_subject_id,
    check_address,
    check_country,
    check_vat_id,
)
from domain.commands.base import Commands, check_name, normalise_email
from domain.context import Ctx
from domain.errors import Conflict, NotFound
from domain.sealing import PersonalData
from policies.retention import fiscal_year
from policies.vat import VatDecision, vat_for


class BillingAccountCommands(Commands):
    """The billing account and its contact's fiscal-year keys."""

    seller_jurisdiction: str = "FR"  # FR or NO: whose VAT and billing retention rules apply (set by the API)

    # -- account ------------------------------------------------------------------------------

    def save_billing_account(
        self, ctx: Ctx, *, name: str, email: str, address: str, country: str, vat_id: str = ""
    ) -> UUID:
        """Open or update the tenant's billing account; personal data sealed with this fiscal year's key."""
        self._tenant(ctx.tenant_id).check_active()
        year = fiscal_year(self.clock())
        subject = billing_contact_subject_id(ctx.tenant_id, year)
        code = check_country(country)
        sealed = {
            "fiscal_year": year,
            "name": PersonalData(subject, check_name(name, "name")),
            "email": PersonalData(subject, normalise_email(email)),
            "address": PersonalData(subject, check_address(address)),
            "country": code,
            "vat_id": PersonalData(subject, check_vat_id(vat_id, code)) if vat_id.strip() else None,
        }
        account = self._get(billing_account_id(ctx.tenant_id))
        if isinstance(account, BillingAccount):
            account.update(ctx, **sealed)  # type: ignore[arg-type]
        else:
            account = BillingAccount(tenant_id=ctx.tenant_id, actor=ctx.actor, request_id=ctx.request_id, **sealed)  # type: ignore[arg-type]
        self._save(account)
        return account.id

    def billing_account(self, tenant_id: UUID) -> BillingAccount | None:
        """The tenant's billing account, if it has one."""
        account = self._get(billing_account_id(tenant_id))
        return account if isinstance(account, BillingAccount) else None

    def link_stripe_customer(self, ctx: Ctx, customer_id: str) -> None:
        """Tie a Stripe customer to the tenant's billing account (both ways, atomically)."""
        account = self.billing_account(ctx.tenant_id)
        if account is None:
            raise NotFound("billing account not found: set the billing details first")
        link = self._get(StripeCustomer.create_id(customer_id))
        if isinstance(link, StripeCustomer) and link.tenant_id != ctx.tenant_id:
            raise Conflict("this Stripe customer belongs to another tenant")
        account.link_customer(ctx, customer_id)
        changed: list[Aggregate] = [account]
        if link is None:
            changed.append(StripeCustomer(customer_id=customer_id, tenant_id=ctx.tenant_id, actor=ctx.actor,
                                          request_id=ctx.request_id))  # fmt: skip
        self._save(*changed)

    def tenant_for_customer(self, customer_id: str) -> UUID | None:
        """The tenant a Stripe customer belongs to."""
        link = self._get(StripeCustomer.create_id(customer_id)) if customer_id else None
        return link.tenant_id if isinstance(link, StripeCustomer) else None

    def vat_decision(self, tenant_id: UUID) -> VatDecision:
        """The VAT on the tenant's invoices; without an account, the seller's domestic rate (never less)."""
        account = self.billing_account(tenant_id)
        country = account.country if account is not None else self.seller_jurisdiction
        business = account is not None and account.business
        return vat_for(self.seller_jurisdiction, country, business_vat_id=business)  # type: ignore[arg-type]

    def carry_contact_forward(self, ctx: Ctx, at: datetime) -> list[Aggregate]:
        """The account, when its contact was sealed again under the fiscal year of ``at`` (unsaved); else []."""
        account = self.billing_account(ctx.tenant_id)
        if account is None or not account.carry_forward(ctx, fiscal_year(at)):
            return []
        return [account]
