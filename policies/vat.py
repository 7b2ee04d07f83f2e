"""VAT on our invoices: which rate applies to a customer, by the seller's jurisdiction (a setting).

Prices exclude VAT; the rate comes from the customer's billing address and whether they are a
business with a VAT id. Rules for a **French seller** (Directive 2006/112/EC as transposed in the
Code général des impôts; electronic services, place of supply arts. 44 and 58 of the Directive):

- customer in France: the French rate (20 %), business or consumer;
- business in another member state with a VAT id: rate 0, reverse charge (art. 196 of the
  Directive, CGI art. 283-2), invoice mention "Autoliquidation" (CGI annex II art. 242 nonies A);
- consumer in another member state: that state's rate (destination principle, one-stop shop since
  1 July 2021; we assume the EUR 10,000 cross-border threshold of art. 59c is passed);
- outside the EU: none (place of supply outside the EU; other countries' own rules for foreign
  sellers of digital services, such as Norway's VOEC, are not applied, as the terms say).

For a **Norwegian seller** (Norway is outside the EU; what we chose, from the merverdiavgiftsloven):

- customer in Norway: the Norwegian rate (25 %, mval. § 5-1), business or consumer;
- business in an EU member state with a VAT id: rate 0, the customer accounts for VAT under their
  own state's reverse charge (art. 196 of the Directive), with the same invoice mention; remote
  services to a recipient abroad are outside Norwegian VAT (mval. § 6-22);
- consumer in an EU member state: that state's rate (the non-Union OSS scheme, arts. 358a-369k of
  the Directive, which a non-EU seller of electronic services to EU consumers must use);
- elsewhere: none (mval. § 6-22).

Rates are integer basis points (2000 = 20 %); VAT is rounded to the cent, half up, once per invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Seller = Literal["FR", "NO"]
SELLERS: tuple[Seller, ...] = ("FR", "NO")

# Standard VAT rates of the EU member states, in basis points.
# Source: European Commission, "VAT rates applied in the Member States of the European Union",
# taxation_customs (situation at 1 January 2025), updated with the changes in force since:
# Estonia 24 % from 1 July 2025, Romania 21 % from 1 August 2025. Table date: 2025-10-01.
EU_STANDARD_RATES_BP: dict[str, int] = {
    "AT": 2000, "BE": 2100, "BG": 2000, "CY": 1900, "CZ": 2100, "DE": 1900, "DK": 2500, "EE": 2400,
    "GR": 2400, "ES": 2100, "FI": 2550, "FR": 2000, "HR": 2500, "HU": 2700, "IE": 2300, "IT": 2200,
    "LT": 2100, "LU": 1700, "LV": 2100, "MT": 1800, "NL": 2100, "PL": 2300, "PT": 2300, "RO": 2100,
    "SE": 2500, "SI": 2200, "SK": 2300,
}  # fmt: skip
EU_RATES_SOURCE = "European Commission, VAT rates applied in the Member States (1 Jan 2025) + EE, RO changes"
EU_RATES_DATE = "2025-10-01"

# Norway's general rate (merverdiavgiftsloven § 5-1; Skatteetaten, "Merverdiavgift", rates 2025).
NORWAY_RATE_BP = 2500
NORWAY_RATE_SOURCE = "Skatteetaten, general VAT rate 25 % (mval. § 5-1)"
NORWAY_RATE_DATE = "2025-10-01"

REVERSE_CHARGE_MENTION = "Autoliquidation / reverse charge: VAT due by the customer (art. 196, Directive 2006/112/EC)"
EXEMPT_MENTION = "VAT not applicable: service supplied outside the seller's VAT territory"

# A VAT id's prefix is the ISO country code, except Greece's (EL).
VAT_PREFIX_COUNTRY = {"EL": "GR"}


@dataclass(frozen=True, slots=True)
class VatDecision:
    """The rate applied to an invoice and what the invoice must say about it."""

    rate_bp: int
    rate_country: str  # whose rate ("" when none applies)
    reverse_charge: bool = False
    mention: str = ""

    def tax_cents(self, net_cents: int) -> int:
        """VAT on a net amount: rounded to the cent, half up (the amount may be negative for a credit)."""
        sign = -1 if net_cents < 0 else 1
        return sign * ((abs(net_cents) * self.rate_bp + 5_000) // 10_000)


def is_eu(country: str) -> bool:
    """A member state of the European Union (ISO 3166 alpha-2; Greece is GR)."""
    return country.upper() in EU_STANDARD_RATES_BP


def vat_country_of(vat_id: str) -> str:
    """The country a VAT id belongs to, from its prefix (EL is Greece)."""
    prefix = vat_id.strip().upper()[:2]
    return VAT_PREFIX_COUNTRY.get(prefix, prefix)


def domestic_rate_bp(seller: Seller) -> int:
    """The seller's own standard rate."""
    return NORWAY_RATE_BP if seller == "NO" else EU_STANDARD_RATES_BP[seller]


def vat_for(seller: Seller, customer_country: str, *, business_vat_id: bool) -> VatDecision:
    """The VAT decision for a customer in ``customer_country``; ``business_vat_id``: a business with a VAT id."""
    if seller not in SELLERS:
        raise ValueError(f"unknown seller jurisdiction {seller!r}; one of {', '.join(SELLERS)}")
    country = customer_country.upper()
    if country == seller:
        return VatDecision(domestic_rate_bp(seller), seller)
    if is_eu(country):
        if business_vat_id:
            return VatDecision(0, "", reverse_charge=True, mention=REVERSE_CHARGE_MENTION)
        return VatDecision(EU_STANDARD_RATES_BP[country], country)
    return VatDecision(0, "", mention=EXEMPT_MENTION)
