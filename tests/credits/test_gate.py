"""The proxy's credit check in one process, fed by the real application's events: who it checks, what
it reserves, and that a reserve and a pending debit are released exactly when they should be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from agent.protocol import Sampling
from api.proxy.balance import CreditGate, prompt_upper_bound
from api.proxy.errors import OpenAIError
from api.proxy.limits import Limiter
from api.proxy.translate import ChatMessage, Generation
from projections.credit_balances import CreditBalances
from tests.credits.support import popo_app
from tests.support.clock import ManualClock

MILLION = 1_000_000


class Meter:
    def __init__(self) -> None:
        self.request_id, self.prompt_tokens, self.completion_tokens = uuid4().hex, 0, 0


def chat(model: str, text: str, max_tokens: int) -> Generation:
    return Generation("chat", model, Sampling(max_tokens=max_tokens), False, False, (ChatMessage("user", text),))


@pytest.fixture
def world(tmp_path: Path) -> tuple[CreditGate, CreditBalances, UUID, UUID, ManualClock, object]:
    """Acme on credits with 1 cent, Globex on its plan; "llama" output costs 0.01 cent per 16 tokens."""
    now = datetime.now(UTC)
    clock = ManualClock(now - timedelta(days=31))
    app = popo_app(tmp_path, clock)
    acme = app.signup(slug="acme", name="A", admin_name="A", admin_email="a@a.example", request_id="1").tenant_id
    globex = app.signup(slug="globex", name="G", admin_name="G", admin_email="g@g.example", request_id="2").tenant_id
    app.schedule_price_change("llama", 0, 625_000_000, now - timedelta(hours=1))  # 10,000 micro-cents / 16 tokens
    app.set_billing_mode(acme, "credits")
    app.purchase_credits(acme, 1, "pi_1", now - timedelta(days=1))
    balances = CreditBalances()
    for notification in app.recorder.select_notifications(1, 1000):
        balances.process(app.mapper.to_domain_event(notification))
    return CreditGate(balances), balances, acme, globex, clock, app


def test_a_plan_tenant_and_an_unpriced_model_pass_unchecked(world) -> None:  # type: ignore[no-untyped-def]
    gate, _, acme, globex, _, _ = world
    limiter = Limiter()
    grant = limiter.admit("team", globex, uuid4())
    assert gate.hold(grant, globex, chat("llama", "hi", 10**6), Meter(), None) is grant  # type: ignore[arg-type]
    grant = limiter.admit("team", acme, uuid4())
    assert gate.hold(grant, acme, chat("unpriced", "hi", 10**6), Meter(), None) is grant  # type: ignore[arg-type]


def test_reserves_cover_the_balance_then_429_insufficient_quota_until_a_request_ends(world) -> None:  # type: ignore[no-untyped-def]
    gate, _, acme, _, _, _ = world
    limiter = Limiter()
    generation = chat("llama", "", 16)  # a reserve of 10,000 micro-cents: 100 fit in 1 cent
    assert prompt_upper_bound(generation, 2048) == 32
    held = []
    for _ in range(100):
        meter = Meter()
        held.append((gate.hold(limiter.admit("enterprise", acme, uuid4()), acme, generation, meter, 2048), meter))  # type: ignore[arg-type]
    assert gate.in_motion(acme) == (100 * 10_000, 0)
    with pytest.raises(OpenAIError) as refused:
        gate.hold(limiter.admit("enterprise", acme, uuid4()), acme, generation, Meter(), 2048)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.body.type, refused.value.body.code) == (
        429, "insufficient_quota", "insufficient_quota",
    )  # fmt: skip
    first, meter = held[0]
    meter.completion_tokens = 8  # it used half its reserve: that half is pending until debited
    first.release(8)
    first.release(8)  # once
    assert gate.in_motion(acme) == (99 * 10_000, 5_000)
    again = gate.hold(limiter.admit("enterprise", acme, uuid4()), acme, chat("llama", "", 8), Meter(), 2048)  # type: ignore[arg-type]
    assert again is not None


def test_a_pending_cost_is_forgotten_once_the_ledger_debits_it(world) -> None:  # type: ignore[no-untyped-def]
    gate, balances, acme, _, _, app = world
    meter = Meter()
    held = gate.hold(Limiter().admit("enterprise", acme, uuid4()), acme, chat("llama", "", 16), meter, 2048)  # type: ignore[arg-type]
    meter.completion_tokens = 16
    held.release(16)
    assert gate.in_motion(acme)[1] == 10_000
    app.debit_usage(acme, meter.request_id, "llama", 0, 16, datetime.now(UTC))
    ledger = app.credit_ledger(acme)
    for event in app.recorder.select_events(ledger.id, gt=ledger.version - 1):
        balances.process(app.mapper.to_domain_event(event))
    assert gate.in_motion(acme) == (0, 0)
    assert balances.tenants[acme].balance(datetime.now(UTC)) == MILLION - 10_000
