"""The story: the operator suspends a tenant for unpaid invoices, its admin is mailed the summary,
appeals while suspended, the operator lifts the suspension, and the admin is mailed the decision."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.outbox import attach_outbox
from api.services import build_services
from api.settings import Settings
from tests.support.smtp import Inbox, smtp_server
from tests.support.terms import TERMS


def mail_number(inbox: Inbox, n: int) -> EmailMessage:
    """The ``n``-th distinct message (by Message-ID) the server received, waiting for the sender's thread."""
    deadline = time.monotonic() + 15
    while len(distinct := list(inbox.deduplicated().values())) < n:
        assert time.monotonic() < deadline, [m["Subject"] for m in distinct]
        time.sleep(0.05)
    return distinct[n - 1]


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_a_suspension_for_unpaid_invoices_is_appealed_and_lifted_with_mail_at_each_step(
    make_settings: Callable[..., Settings],
) -> None:
    with smtp_server() as (inbox, port):
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
        services = build_services(settings)
        mailer = attach_outbox(services)  # the sender runs in its own thread, as in `ownllm serve`
        try:
            with TestClient(create_app(settings, services)) as client:
                signup = {
                    "slug": "acme",
                    "name": "Acme",
                    "admin_name": "Ada",
                    "admin_email": "ada@acme.example",
                    "accept_terms": TERMS,
                }
                signed = client.post("/api/v1/tenants", json=signup).json()
                tenant, admin = signed["tenant"]["id"], {"Authorization": f"Bearer {signed['api_key']['secret']}"}
                token = services.command(services.app.issue_operator_token, name="billing-desk", request_id="r")
                operator = {"Authorization": f"Bearer {token.secret}"}

                # The operator suspends Acme: its invoice is 45 days overdue.
                suspension = client.post("/api/v1/operator/suspensions", headers=operator, json={
                    "tenant_id": tenant, "kind": "tenant", "subject_id": tenant, "reason_code": "unpaid_invoice",
                    "summary": "invoice INV-7 is 45 days overdue",
                })  # fmt: skip
                assert suspension.status_code == 201, suspension.text
                case = suspension.json()["id"]

                # Ada gets the summary by mail, and her key stops working, except to appeal.
                notice = mail_number(inbox, 1)
                assert notice["To"] == "ada@acme.example" and notice["Subject"] == "OwnLLM: access suspended"
                assert "unpaid invoices" in notice.get_content() and "INV-7" in notice.get_content()
                assert case in notice.get_content()
                assert client.get("/api/v1/me", headers=admin).status_code == 403
                statement = {"suspension_id": case, "statement": "paid this morning, ref 8812"}
                appeal = client.post("/api/v1/appeals", headers=admin, json=statement)
                assert appeal.status_code == 201, appeal.text
                assert client.get("/api/v1/appeals", headers=admin).json()[0]["status"] == "open"

                # The operator sees the appeal and lifts the suspension.
                queue = client.get("/api/v1/operator/appeals", headers=operator).json()
                assert [(a["id"], a["status"]) for a in queue] == [(appeal.json()["id"], "open")]
                decided = client.post(f"/api/v1/operator/appeals/{appeal.json()['id']}/decision", headers=operator,
                                      json={"outcome": "lifted", "reason": "payment received"})  # fmt: skip
                assert decided.status_code == 201 and decided.json()["status"] == "lifted", decided.text

                # Ada is told, and works again.
                decision = mail_number(inbox, 2)
                assert decision["To"] == "ada@acme.example" and decision["Subject"] == "OwnLLM: appeal lifted"
                assert "payment received" in decision.get_content() and "lifted" in decision.get_content()
                assert client.get("/api/v1/me", headers=admin).status_code == 200
                assert client.get("/api/v1/suspensions", headers=admin).json()[0]["status"] == "lifted"
                again = client.post("/api/v1/appeals", headers=admin, json={"suspension_id": case, "statement": "x"})
                assert again.status_code == 409  # one appeal per suspension
            assert all(n.status == "sent" and n.body == "" for n in mailer.store.all())
        finally:
            mailer.stop()
            services.close()
