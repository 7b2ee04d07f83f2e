"""A ledger older than snapshots (written before they existed, or while they failed) gets one the first time
the debit path reads it whole, so a deployment that upgrades does not replay it at every restart."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.commands.credits import held_state
from domain.credit_ledger import CreditLedger, ledger_id_for
from tests.credits.support import popo_app
from tests.support.clock import ManualClock

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_ledger_without_snapshots_gets_one_when_the_debit_path_reads_it_whole() -> None:
    clock = ManualClock(START - timedelta(days=40))
    app = popo_app(Path(tempfile.mkdtemp(prefix="snapshots-")), clock)
    app.snapshotting_intervals = {CreditLedger: 10}  # type: ignore[misc]
    store, app.snapshots = app.snapshots, None  # as before snapshots existed
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r")
    app.schedule_price_change("llama", 100_000_000, 0, START - timedelta(days=5))
    app.set_billing_mode(acme.tenant_id, "credits")
    app.purchase_credits(acme.tenant_id, 1_000, "pi_a", START - timedelta(days=1))
    for n in range(25):
        app.debit_usage(acme.tenant_id, f"req-{n}", "llama", 1_000, 0, START)
    ledger_id = ledger_id_for(acme.tenant_id)
    assert store is not None and list(store.get(ledger_id)) == []

    app.snapshots = store  # the upgrade, then a restart
    app.forget_cached_ledgers()
    whole = app._cached_ledgers([acme.tenant_id])[acme.tenant_id]
    (snapshot,) = store.get(ledger_id)
    assert snapshot.originator_version == whole.version == 28  # opened, mode, a lot, 25 debits

    app.forget_cached_ledgers()  # the next restart starts from it
    again = app._cached_ledgers([acme.tenant_id])[acme.tenant_id]
    assert held_state(again) == held_state(whole)
    assert len(list(store.get(ledger_id))) == 1  # a short tail: no new snapshot
