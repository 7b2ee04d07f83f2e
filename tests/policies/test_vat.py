"""VAT: the rate table by seller jurisdiction, reverse charge, destination rates, none outside the EU."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.vat import (
    EU_STANDARD_RATES_BP,
    REVERSE_CHARGE_MENTION,
    VatDecision,
    is_eu,
    vat_country_of,
    vat_for,
)

CASES = [
    # seller, country, business with VAT id, rate (bp), reverse charge
    ("FR", "FR", False, 2000, False),
    ("FR", "FR", True, 2000, False),  # domestic business: French VAT, no reverse charge
    ("FR", "DE", True, 0, True),
    ("FR", "DE", False, 1900, False),  # EU consumer: destination rate
    ("FR", "FI", False, 2550, False),
    ("FR", "HU", False, 2700, False),
    ("FR", "US", False, 0, False),
    ("FR", "US", True, 0, False),
    ("FR", "NO", False, 0, False),  # Norway is outside the EU
    ("FR", "GB", True, 0, False),
    ("NO", "NO", False, 2500, False),
    ("NO", "NO", True, 2500, False),
    ("NO", "FR", True, 0, True),
    ("NO", "FR", False, 2000, False),  # non-Union OSS: destination rate
    ("NO", "SE", False, 2500, False),
    ("NO", "US", False, 0, False),
    ("NO", "CH", True, 0, False),
]


@pytest.mark.parametrize(("seller", "country", "business", "rate", "reverse"), CASES)
def test_rate_table(seller: str, country: str, business: bool, rate: int, reverse: bool) -> None:
    decision = vat_for(seller, country, business_vat_id=business)  # type: ignore[arg-type]
    assert (decision.rate_bp, decision.reverse_charge) == (rate, reverse)
    assert (decision.mention == REVERSE_CHARGE_MENTION) == reverse


def test_every_member_state_has_a_plausible_rate() -> None:
    assert len(EU_STANDARD_RATES_BP) == 27
    assert all(1500 <= rate <= 2700 for rate in EU_STANDARD_RATES_BP.values())


def test_greek_vat_ids_start_with_el() -> None:
    assert vat_country_of("EL123456789") == "GR" and is_eu("gr")
    assert vat_country_of("de123456789") == "DE"


def test_unknown_seller_is_refused() -> None:
    with pytest.raises(ValueError, match="seller"):
        vat_for("DE", "FR", business_vat_id=False)  # type: ignore[arg-type]


def test_rounding_is_half_up_to_the_cent() -> None:
    assert VatDecision(2000, "FR").tax_cents(9_900) == 1_980
    assert VatDecision(2550, "FI").tax_cents(2) == 1  # 0.51 cent -> 1
    assert VatDecision(2500, "NO").tax_cents(2) == 1  # 0.5 cent -> 1 (half up)
    assert VatDecision(2000, "FR").tax_cents(-9_900) == -1_980  # a credit mirrors a charge


@given(st.integers(0, 10**9), st.sampled_from(sorted(EU_STANDARD_RATES_BP.values())))
def test_tax_is_within_half_a_cent_of_exact(net: int, rate: int) -> None:
    tax = VatDecision(rate, "X").tax_cents(net)
    assert abs(tax * 10_000 - net * rate) <= 5_000
