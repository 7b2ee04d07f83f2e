"""A tenant's billing account: who is invoiced, where (VAT follows the country) and under which VAT id.

The account's id is the tenant's uuid5, so a tenant has at most one. Its personal data (the billed
party's name, email, postal address and VAT id, which may name a sole trader) is sealed with the
account's own subject key (:func:`billing_subject_id`); the country and whether a VAT id was given
stay in clear, as the VAT decision on every invoice needs them for the whole retention period.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError

from domain.context import Ctx
from domain.errors import InvalidValue
from domain.ids import NAMESPACE
from domain.sealing import PersonalData
from policies.vat import vat_country_of

MAX_ADDRESS = 500


def billing_account_id(tenant_id: UUID) -> UUID:
    """A tenant's billing account id (also the subject id its personal data is sealed with)."""
    return uuid5(NAMESPACE, f"billing-account:{tenant_id}")


billing_subject_id = billing_account_id  # erasing the billed party destroys this subject's key


def check_country(country: str) -> str:
    """An ISO 3166 alpha-2 code, upper-cased (Greece is GR)."""
    code = country.strip().upper()
    if len(code) != 2 or not code.isalpha():
        raise InvalidValue("country must be an ISO 3166 alpha-2 code such as FR or NO", "country")
    return code


def check_vat_id(vat_id: str, country: str) -> str:
    """An EU VAT id in its compact form, valid in format and check digits, of the billing country."""
    try:
        compact = str(eu_vat.validate(vat_id))
    except ValidationError:
        raise InvalidValue("vat_id is not a valid EU VAT number", "vat_id") from None
    if vat_country_of(compact) != country:
        raise InvalidValue("vat_id does not belong to the billing address's country", "vat_id")
    return compact


def check_address(address: str) -> str:
    """A non-empty postal address of bounded length."""
    cleaned = address.strip()
    if not cleaned or len(cleaned) > MAX_ADDRESS:
        raise InvalidValue(f"address must be 1-{MAX_ADDRESS} characters", "address")
    return cleaned


class BillingAccount(Aggregate):
    """Whom a tenant's invoices go to; the Stripe customer id is pseudonymous and kept in clear."""

    class Opened(Aggregate.Created):
        tenant_id: UUID
        name: PersonalData
        email: PersonalData
        address: PersonalData
        country: str
        vat_id: PersonalData | None
        actor: str
        request_id: str

    class Updated(Aggregate.Event):
        tenant_id: UUID
        name: PersonalData
        email: PersonalData
        address: PersonalData
        country: str
        vat_id: PersonalData | None
        actor: str
        request_id: str

    class StripeCustomerLinked(Aggregate.Event):
        tenant_id: UUID
        customer_id: str
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, **_: object) -> UUID:
        """One account per tenant."""
        return billing_account_id(tenant_id)

    @event(Opened)
    def __init__(
        self,
        tenant_id: UUID,
        name: PersonalData,
        email: PersonalData,
        address: PersonalData,
        country: str,
        vat_id: PersonalData | None,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self._apply(name, email, address, country, vat_id)
        self.customer_id = ""

    @property
    def business(self) -> bool:
        """A business with a VAT id (reverse charge may apply)."""
        return self.vat_id is not None

    def update(
        self, ctx: Ctx, *, name: PersonalData, email: PersonalData, address: PersonalData, country: str,
        vat_id: PersonalData | None,
    ) -> None:  # fmt: skip
        """Replace the billing details."""
        self._updated(
            tenant_id=self.tenant_id, name=name, email=email, address=address, country=country, vat_id=vat_id,
            actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip

    def link_customer(self, ctx: Ctx, customer_id: str) -> None:
        """Remember the Stripe customer (no event when it is already the one)."""
        if customer_id != self.customer_id:
            self._linked(tenant_id=self.tenant_id, customer_id=customer_id, actor=ctx.actor, request_id=ctx.request_id)

    def _apply(
        self, name: PersonalData, email: PersonalData, address: PersonalData, country: str, vat_id: PersonalData | None
    ) -> None:
        self.name, self.email, self.address, self.country, self.vat_id = name, email, address, country, vat_id

    @event(Updated)
    def _updated(
        self, tenant_id: UUID, name: PersonalData, email: PersonalData, address: PersonalData, country: str,
        vat_id: PersonalData | None, actor: str, request_id: str,
    ) -> None:  # fmt: skip
        self._apply(name, email, address, country, vat_id)

    @event(StripeCustomerLinked)
    def _linked(self, tenant_id: UUID, customer_id: str, actor: str, request_id: str) -> None:
        self.customer_id = customer_id


class StripeCustomer(Aggregate):
    """Which tenant a Stripe customer id belongs to: webhooks name customers, never our tenants."""

    class Linked(Aggregate.Created):
        customer_id: str
        tenant_id: UUID
        actor: str
        request_id: str

    @staticmethod
    def create_id(customer_id: str, **_: object) -> UUID:
        """The customer id's uuid5: one tenant per customer, enforced by the store."""
        return uuid5(NAMESPACE, f"stripe-customer:{customer_id}")

    @event(Linked)
    def __init__(self, customer_id: str, tenant_id: UUID, actor: str, request_id: str) -> None:
        self.customer_id = customer_id
        self.tenant_id = tenant_id
