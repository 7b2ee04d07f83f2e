"""The billing role reads its tenant's credits: balance and lots, movements in keyset pages, a CSV
for the accountant; a member may not; price-change notices wait in the outbox. Both stores."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.ids import tenant_id_for
from tests.support.api_client import Api

MILLION = 1_000_000


def join(api: Api, admin_key: str, email: str, role: str) -> str:
    """Invite, accept, set the role; a key of the new user with the scope its role allows."""
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": email, "role": "member"}).json()["token"]
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Bill"}).json()
    if role != "member":
        changed = api.call("POST", f"/api/v1/users/{joined['user_id']}/role", admin_key, json={"role": role})
        assert changed.status_code == 201, changed.text
    key = joined["api_key"]["secret"]
    if role == "billing":
        issued = api.call("POST", "/api/v1/keys", key, json={"name": "books", "scopes": ["billing"]})
        assert issued.status_code == 201, issued.text
        key = issued.json()["secret"]
    return str(key)


def settled(api: Api) -> None:
    """Wait until the credit view has applied the whole log."""
    view, app = api.services.credit_view, api.services.app
    assert view is not None
    deadline = time.monotonic() + 20
    while view.stored_position() < app.recorder.max_notification_id():
        assert time.monotonic() < deadline, "the credit view did not catch up"
        time.sleep(0.02)


def usage(tenant: uuid.UUID, request_id: str, prompt: int) -> dict[str, Any]:
    return {
        "tenant_id": tenant, "user_id": tenant, "key_id": tenant, "agent_id": None, "model": "llama",
        "endpoint": "/v1/chat/completions", "stream": False, "status": "ok", "prompt_tokens": prompt,
        "completion_tokens": 0, "ttft_ms": 1, "duration_ms": 4, "request_id": request_id,
    }  # fmt: skip


def test_billing_reads_balance_lots_movements_and_their_csv(api: Api) -> None:
    admin_key = api.signup("acme", email="ada@acme.example")["api_key"]["secret"]
    tenant = tenant_id_for("acme")
    app, clock = api.services.app, api.clock
    real_now = datetime.now(UTC)
    clock.now = real_now - timedelta(days=40)
    app.schedule_price_change("llama", 100 * MILLION, 0, real_now - timedelta(days=10))  # $1 per million prompt
    clock.now = real_now
    app.set_billing_mode(tenant, "credits")
    lot_a = app.purchase_credits(tenant, 500, "pi_a", real_now - timedelta(days=3))
    lot_b = app.purchase_credits(tenant, 300, "pi_b", real_now - timedelta(days=2))
    app.record_usage_batch([usage(tenant, f"req-{n}", 1_000_000) for n in range(6)])  # 6 x 100 cents
    deadline = time.monotonic() + 20
    while (ledger := app.credit_ledger(tenant)) is None or ledger.totals["debited"] < 600 * MILLION:
        assert time.monotonic() < deadline, "the debits did not happen"
        time.sleep(0.02)
    app.schedule_price_change("llama", 200 * MILLION, 0, real_now + timedelta(days=30))
    settled(api)

    member_key = join(api, admin_key, "mo@acme.example", "member")
    assert api.call("GET", "/api/v1/billing/credits", member_key).status_code == 403
    billing_key = join(api, admin_key, "bill@acme.example", "billing")

    credits = api.call("GET", "/api/v1/billing/credits", billing_key)
    assert credits.status_code == 200, credits.text
    body = credits.json()
    assert (body["balance_cents"], body["balance_micro_cents"], body["currency"]) == (200, 200 * MILLION, "usd")
    assert [(lot["lot_id"], lot["remaining_micro_cents"]) for lot in body["lots"]] == [
        (str(lot_a), 0), (str(lot_b), 200 * MILLION),
    ]  # fmt: skip

    first = api.call("GET", "/api/v1/billing/credits/movements?limit=5", billing_key)
    assert first.status_code == 200 and first.headers["X-Total-Count"] == "8"
    assert [m["kind"] for m in first.json()] == ["purchase", "purchase", "debit", "debit", "debit"]
    next_url = first.headers["Link"].split(";")[0].strip("<>")
    rest = api.call("GET", next_url, billing_key).json()
    assert [m["usage_request_id"] for m in rest] == ["req-3", "req-4", "req-5"]
    assert "Link" not in api.call("GET", next_url, billing_key).headers
    assert {m["price_version"] for m in rest} == {1}

    export = api.call("GET", "/api/v1/billing/credits/movements/export", admin_key)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 8 and sum(int(r["amount_micro_cents"]) for r in rows if r["kind"] == "debit") == 600 * MILLION

    # The price change waits in the outbox as one notice to Acme (the only tenant on credits).
    view = api.services.credit_view
    assert view is not None
    notices = view.pending_notices()
    assert [(n.tenant_id, n.model, n.input_per_million, n.version) for n in notices] == [
        (tenant, "llama", 200 * MILLION, 2)
    ]
    view.mark_sent([(n.position, n.tenant_id) for n in notices], real_now)
    assert view.pending_notices() == []

    # The lots' expiry: the sweep's query names the tenant at the instant, not before.
    assert view.due_tenants(real_now) == []
    assert view.due_tenants(real_now - timedelta(days=3) + timedelta(days=366)) == [tenant]
