"""A tenant buys credits and uses them: debits follow usage, oldest lot first, at the price of the
request's time; a lot expires at its instant; termination forfeits the rest. On both stores."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.application import project_aggregate

from api.credit_debits import CreditExpirySweep
from api.services import Services
from domain.commands.credits import held_state
from domain.credit_ledger import CreditLedger, ledger_id_for
from domain.errors import NoticeTooShort, NotRefundable
from tests.support.clock import ManualClock

MILLION = 1_000_000


def usage(tenant: uuid.UUID, request_id: str, model: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "tenant_id": tenant, "user_id": tenant, "key_id": tenant, "agent_id": None, "model": model,
        "endpoint": "/v1/chat/completions", "stream": False, "status": "ok", "prompt_tokens": prompt,
        "completion_tokens": completion, "ttft_ms": 1, "duration_ms": 4, "request_id": request_id,
    }  # fmt: skip


def settle(services: Services, name: str = "credit-debits") -> None:
    """Run the reactions until the named one has seen the whole log."""
    deadline = time.monotonic() + 30
    while services.reactions.position(name) < services.app.recorder.max_notification_id():
        services.reactions.run_once()
        assert time.monotonic() < deadline, "the reaction did not catch up"
        time.sleep(0.01)


def test_a_tenant_buys_credits_and_spends_them_oldest_first(services: Services, clock: ManualClock) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    real_now = datetime.now(UTC)  # usage events carry the real time of their writing

    # The operator announced the model's price 40 days ago, effective 10 days ago: $1 per million
    # prompt tokens, $2 per million completion tokens (in micro-cents per million tokens).
    clock.now = real_now - timedelta(days=40)
    with pytest.raises(NoticeTooShort):
        app.schedule_price_change("llama", 100 * MILLION, 200 * MILLION, clock.now + timedelta(days=29))
    first = app.schedule_price_change("llama", 100 * MILLION, 200 * MILLION, clock.now + timedelta(days=30))
    # ... and a rise next month, announced today with its 30 days' notice.
    clock.now = real_now
    app.schedule_price_change("llama", 300 * MILLION, 600 * MILLION, real_now + timedelta(days=31))

    # Acme switches to prepaid credits and buys $1.00 twice (Stripe payments pi_a then pi_b).
    app.set_billing_mode(acme.tenant_id, "credits")
    lot_a = app.purchase_credits(acme.tenant_id, 100, "pi_a", real_now - timedelta(days=2))
    lot_b = app.purchase_credits(acme.tenant_id, 100, "pi_b", real_now - timedelta(days=1))

    # Globex runs on its own GPU under its plan: its credits are not debited by its usage.
    globex = app.signup(slug="globex", name="Globex", admin_name="Gil", admin_email="gil@globex.example",
                        request_id="r2")  # fmt: skip
    app.purchase_credits(globex.tenant_id, 100, "pi_g", real_now - timedelta(days=1))
    app.record_usage_batch([usage(globex.tenant_id, "g-1", "llama", 300_000, 200_000)])

    # 300,000 prompt + 200,000 completion tokens: 30 + 40 = 70 cents, from lot A alone.
    app.record_usage_batch([usage(acme.tenant_id, "req-1", "llama", 300_000, 200_000)])
    settle(services)
    ledger = app.credit_ledger(acme.tenant_id)
    assert ledger is not None
    assert ledger.lots[lot_a].remaining_micro == 30 * MILLION
    assert ledger.lots[lot_b].remaining_micro == 100 * MILLION
    globex_ledger = app.credit_ledger(globex.tenant_id)
    assert globex_ledger is not None and globex_ledger.totals["debited"] == 0

    # 50 cents more: 30 from A (now empty), 20 from B. The debit names the price version it used.
    app.record_usage_batch([usage(acme.tenant_id, "req-2", "llama", 500_000, 0)])
    app.record_usage_batch([usage(acme.tenant_id, "req-2", "llama", 500_000, 0)])  # a repeat is stored once
    settle(services)
    ledger = app.credit_ledger(acme.tenant_id)
    assert ledger is not None
    assert (ledger.lots[lot_a].remaining_micro, ledger.lots[lot_b].remaining_micro) == (0, 80 * MILLION)
    stored = [app.mapper.to_domain_event(s) for s in app.recorder.select_events(ledger.id)]
    debited = [e for e in stored if type(e).__name__ == "Debited"]
    assert [(e.usage_request_id, e.price_version, e.cost_micro) for e in debited] == [
        ("req-1", first, 70 * MILLION),
        ("req-2", first, 50 * MILLION),
    ]
    assert debited[1].taken == [
        {"lot_id": str(lot_a), "micro": 30 * MILLION},
        {"lot_id": str(lot_b), "micro": 20 * MILLION},
    ]

    # A used lot is not refundable; the expiry sweep does nothing until the instant, then once.
    with pytest.raises(NotRefundable):
        app.refund_lot(acme.tenant_id, lot_b, real_now)
    sweep = CreditExpirySweep(app, lambda now: [acme.tenant_id])
    expiry_b = ledger.lots[lot_b].expires_at
    assert sweep.run(expiry_b - timedelta(microseconds=1)) == 1  # lot A (a day older) is due, B not yet
    assert sweep.run(expiry_b) == 1
    assert sweep.run(expiry_b) == 0
    ledger = app.credit_ledger(acme.tenant_id)
    assert ledger is not None and ledger.balance_micro(expiry_b) == 0
    assert ledger.totals["expired"] == 80 * MILLION


def test_termination_forfeits_what_is_left_and_an_unused_lot_is_refunded_within_30_days(
    services: Services, clock: ManualClock
) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    bought = clock.now
    lot_a = app.purchase_credits(acme.tenant_id, 500, "pi_a", bought)
    app.purchase_credits(acme.tenant_id, 700, "pi_b", bought)
    with pytest.raises(NotRefundable):
        app.refund_lot(acme.tenant_id, lot_a, bought + timedelta(days=30))  # the window closed at the instant
    assert app.refund_lot(acme.tenant_id, lot_a, bought + timedelta(days=29, hours=23)) == 500
    assert app.forfeit_credits(acme.tenant_id, bought + timedelta(days=40)) == 700 * MILLION
    assert app.forfeit_credits(acme.tenant_id, bought + timedelta(days=41)) == 0  # once
    ledger = app.credit_ledger(acme.tenant_id)
    assert ledger is not None and ledger.balance_micro(bought + timedelta(days=41)) == 0
    assert (ledger.totals["refunded"], ledger.totals["forfeited"]) == (500 * MILLION, 700 * MILLION)


def _on_credits(app: Any) -> tuple[Any, datetime]:
    """Acme on credits with one $10 lot, "llama" priced at $1 per million prompt tokens; and real now."""
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    real_now = datetime.now(UTC)
    app.clock = lambda: real_now - timedelta(days=40)
    app.schedule_price_change("llama", 100 * MILLION, 0, real_now - timedelta(days=10))
    app.set_billing_mode(acme.tenant_id, "credits")
    app.purchase_credits(acme.tenant_id, 1_000, "pi_a", real_now - timedelta(days=1))
    return acme, real_now


def test_a_debit_batch_whose_transaction_failed_is_debited_once_on_retry(services: Services) -> None:
    app = services.app
    acme, real_now = _on_credits(app)
    app.record_usage_batch([usage(acme.tenant_id, "warm", "llama", 1_000_000, 0)])
    settle(services)  # the ledger is now cached by the debit path

    record, failures = app._record, []

    def fail_once(processing: Any) -> Any:
        if not failures and processing.tracking is not None:
            failures.append(processing.tracking.notification_id)
            raise RuntimeError("the database went away mid-commit")
        return record(processing)

    app._record = fail_once  # type: ignore[method-assign]
    app.record_usage_batch([usage(acme.tenant_id, f"req-{n}", "llama", 1_000_000, 0) for n in range(3)])
    settle(services)
    ledger = app.credit_ledger(acme.tenant_id)
    assert failures, "the failure was not injected"
    assert ledger is not None and ledger.totals["debited"] == 4 * 100 * MILLION  # warm + 3, each once
    assert ledger.balance_micro(real_now) == 600 * MILLION


def test_a_long_lived_ledger_is_read_from_its_latest_snapshot(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Years of debits: a purchase, a refund or the debit path after a restart reads the ledger's latest
    snapshot and the events after it, not its whole history (a snapshot every 10 events here)."""
    app = services.app
    monkeypatch.setattr(app, "snapshotting_intervals", {CreditLedger: 10})
    acme, real_now = _on_credits(app)
    for batch in range(3):  # 3 reaction batches of 9 debits: snapshots as they cross 10 and 20
        app.record_usage_batch([usage(acme.tenant_id, f"req-{batch}-{n}", "llama", 1_000, 0) for n in range(9)])
        settle(services)
    ledger_id = ledger_id_for(acme.tenant_id)
    assert services.app.snapshots is not None
    (latest,) = app.snapshots.get(ledger_id)  # the one at 20 dropped the one at 10: only the latest is read
    assert latest.originator_version >= 20

    reads: list[int | None] = []  # the first version of the ledger's events read
    tails = app._tails

    def noted(starts: dict[Any, int]) -> Any:
        reads.append(starts.get(ledger_id))
        return tails(starts)

    monkeypatch.setattr(app, "_tails", noted)
    lot = app.purchase_credits(acme.tenant_id, 500, "pi_b", real_now)  # loads the ledger
    assert reads and reads[-1] == latest.originator_version + 1  # the events after the snapshot only
    monkeypatch.undo()
    assert app.refund_lot(acme.tenant_id, lot, real_now) == 500

    app.forget_cached_ledgers()  # a restart: the debit path starts from the snapshot too
    app.record_usage_batch([usage(acme.tenant_id, "after-restart", "llama", 1_000, 0)])
    app.record_usage_batch([usage(acme.tenant_id, "req-0-0", "llama", 1_000, 0)])  # a repeat: remembered
    settle(services)
    replayed = project_aggregate(None, app.events.get(ledger_id))
    loaded = app.credit_ledger(acme.tenant_id)
    assert loaded is not None and held_state(loaded) == held_state(replayed)
    per_request = 1_000 * 100 * MILLION // MILLION  # 1,000 prompt tokens at 100 M micro-cents per million
    assert loaded.totals["debited"] == 28 * per_request  # 27 + 1 after the restart, the repeat not again
    assert loaded.totals["refunded"] == 500 * MILLION
    checked, differ = app.mismatched_snapshots([acme.tenant_id])
    assert checked == len(list(app.snapshots.get(ledger_id))) == 1 and differ == []

    # Someone with write access to the database slips in a snapshot with $10,000 more: the ledger would
    # load it, and the auditor's check (`ownllm audit verify --live`) names it.
    loaded.totals["purchased"] += 1_000_000 * MILLION
    loaded.lots[lot].remaining_micro += 1_000_000 * MILLION
    app.snapshots.put([CreditLedger.Snapshot.take(loaded)])
    checked_again, differ = app.mismatched_snapshots([acme.tenant_id])
    assert checked_again == checked + 1
    assert differ == [f"credit ledger of tenant {acme.tenant_id}: the snapshot at version {loaded.version} "
                      "differs from its events"]  # fmt: skip
