"""Buying credits: one lot per payment, a year's life, and a repeated payment adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.services import Services
from domain.credit_ledger import lot_id_for
from domain.errors import InvalidValue, NotFound
from domain.ids import tenant_id_for


def test_a_payment_buys_one_lot_that_expires_a_year_later_and_a_redelivery_adds_nothing(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    bought = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

    lot_id = app.purchase_credits(acme.tenant_id, 1_000, "pi_123", bought)
    again = app.purchase_credits(acme.tenant_id, 1_000, "pi_123", bought)  # Stripe redelivers the webhook

    assert lot_id == again == lot_id_for(acme.tenant_id, "pi_123")
    ledger = app.credit_ledger(acme.tenant_id)
    assert ledger is not None and list(ledger.lots) == [lot_id]
    lot = ledger.lots[lot_id]
    assert (lot.amount_cents, lot.purchased_at) == (1_000, bought)
    assert lot.expires_at == datetime(2027, 3, 1, 12, 30, tzinfo=UTC)
    assert ledger.balance_micro(bought) == 1_000 * 1_000_000
    assert ledger.balance_micro(lot.expires_at) == 0  # expired at the exact instant, swept or not


def test_a_purchase_needs_a_known_tenant_and_a_positive_whole_amount(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(NotFound):
        app.purchase_credits(tenant_id_for("nobody"), 1_000, "pi_1", now)
    for bad in (0, -5, 10.5, True):
        with pytest.raises(InvalidValue):
            app.purchase_credits(acme.tenant_id, bad, "pi_2", now)  # type: ignore[arg-type]
    assert app.credit_ledger(acme.tenant_id) is None
