"""A tenant's billing account: who is invoiced, where (VAT follows the country) and under which VAT id.

The account's id is the tenant's uuid5, so a tenant has at most one. Its personal data (the billed
party's name, email, postal address and VAT id, which may name a sole trader) is sealed with a key
per tenant and fiscal year (:func:`billing_contact_subject_id`), destroyed when that year's billing
retention ends (``policies/retention.py``, the seller's jurisdiction). The contact in force is
carried into each new fiscal year (``ContactCarriedForward``, sealed under the new year's key), so
ending an old year's retention erases only that year's copies. Events written before per-year keys
(``fiscal_year`` 0) are sealed with the account's own key (:func:`billing_subject_id`). The country
and whether a VAT id was given stay in clear, as the VAT decision on every invoice needs them.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError

from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue
from domain.ids import NAMESPACE
from domain.sealing import PersonalData
from policies.vat import vat_country_of

MAX_ADDRESS = 500


def billing_account_id(tenant_id: UUID) -> UUID:
    """A tenant's billing account id (also the subject id its personal data is sealed with)."""
    return uuid5(NAMESPACE, f"billing-account:{tenant_id}")


billing_subject_id = billing_account_id  # the key of contacts sealed before per-fiscal-year keys


def billing_contact_subject_id(tenant_id: UUID, fiscal_year: int) -> UUID:
    """The subject whose key seals the tenant's billing contact in ``fiscal_year`` (0: the legacy account key)."""
    if fiscal_year == 0:
        return billing_subject_id(tenant_id)
    return uuid5(NAMESPACE, f"billing-contact:{tenant_id}:{fiscal_year}")


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
        fiscal_year: int = 0  # whose key seals the contact (0: written before per-year keys)

    class Updated(Aggregate.Event):
        tenant_id: UUID
        name: PersonalData
        email: PersonalData
        address: PersonalData
        country: str
        vat_id: PersonalData | None
        actor: str
        request_id: str
        fiscal_year: int = 0

    class ContactCarriedForward(Aggregate.Event):
        """The contact in force, sealed again under ``fiscal_year``'s key (the old year's key may then go)."""

        tenant_id: UUID
        name: PersonalData
        email: PersonalData
        address: PersonalData
        vat_id: PersonalData | None
        fiscal_year: int
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
        fiscal_year: int = 0,
    ) -> None:
        self.tenant_id = tenant_id
        self._apply(name, email, address, country, vat_id, fiscal_year)
        self.customer_id = ""

    @property
    def business(self) -> bool:
        """A business with a VAT id (reverse charge may apply)."""
        return self.vat_id is not None

    def update(
        self, ctx: Ctx, *, name: PersonalData, email: PersonalData, address: PersonalData, country: str,
        vat_id: PersonalData | None, fiscal_year: int = 0,
    ) -> None:  # fmt: skip
        """Replace the billing details."""
        self._updated(
            tenant_id=self.tenant_id, name=name, email=email, address=address, country=country, vat_id=vat_id,
            actor=ctx.actor, request_id=ctx.request_id, fiscal_year=fiscal_year,
        )  # fmt: skip

    def check_contact_readable(self) -> None:
        """The contact in force can be sealed again only while its key lives."""
        values = [self.name, self.email, self.address, *([self.vat_id] if self.vat_id is not None else [])]
        if any(v.erased or v.unreadable for v in values):
            raise InvalidState("the billing contact in force is erased or unreadable: set the billing details again")

    def carry_forward(self, ctx: Ctx, fiscal_year: int) -> bool:
        """Seal the contact in force under ``fiscal_year``'s key; no event when it already is (or is newer)."""
        if fiscal_year <= self.fiscal_year:
            return False
        self.check_contact_readable()
        subject = billing_contact_subject_id(self.tenant_id, fiscal_year)

        def seal(value: PersonalData) -> PersonalData:
            return PersonalData(subject, value.value)

        self._carried(
            tenant_id=self.tenant_id, name=seal(self.name), email=seal(self.email), address=seal(self.address),
            vat_id=seal(self.vat_id) if self.vat_id is not None else None, fiscal_year=fiscal_year, actor=ctx.actor,
            request_id=ctx.request_id,
        )  # fmt: skip
        return True

    def link_customer(self, ctx: Ctx, customer_id: str) -> None:
        """Remember the Stripe customer (no event when it is already the one)."""
        if customer_id != self.customer_id:
            self._linked(tenant_id=self.tenant_id, customer_id=customer_id, actor=ctx.actor, request_id=ctx.request_id)

    def _apply(
        self, name: PersonalData, email: PersonalData, address: PersonalData, country: str, vat_id: PersonalData | None,
        fiscal_year: int,
    ) -> None:  # fmt: skip
        self.name, self.email, self.address, self.country, self.vat_id = name, email, address, country, vat_id
        self.fiscal_year = fiscal_year  # whose key seals the contact in force (0: the legacy account key)

    @event(Updated)
    def _updated(
        self, tenant_id: UUID, name: PersonalData, email: PersonalData, address: PersonalData, country: str,
        vat_id: PersonalData | None, actor: str, request_id: str, fiscal_year: int = 0,
    ) -> None:  # fmt: skip
        self._apply(name, email, address, country, vat_id, fiscal_year)

    @event(ContactCarriedForward)
    def _carried(
        self, tenant_id: UUID, name: PersonalData, email: PersonalData, address: PersonalData,
        vat_id: PersonalData | None, fiscal_year: int, actor: str, request_id: str,
    ) -> None:  # fmt: skip
        self._apply(name, email, address, self.country, vat_id, fiscal_year)

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
