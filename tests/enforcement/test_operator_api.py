"""The operator: its own token, its own routes; suspensions with reason codes, and what a suspended tenant keeps."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api_client import Api


def operator_token(api: Api, name: str = "ops") -> str:
    issued = api.services.command(api.services.app.issue_operator_token, name=name, request_id="t")
    assert issued.secret.startswith("ollmop_")
    return str(issued.secret)


def suspend(api: Api, op: str, tenant: str, kind: str, subject: str, code: str = "abuse") -> dict[str, Any]:
    body = {"tenant_id": tenant, "kind": kind, "subject_id": subject, "reason_code": code, "summary": "spam burst"}
    answer = api.call("POST", "/api/v1/operator/suspensions", op, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def reinstate(api: Api, op: str, tenant: str, kind: str, subject: str) -> None:
    body = {"tenant_id": tenant, "kind": kind, "subject_id": subject, "reason": "resolved"}
    answer = api.call("POST", "/api/v1/operator/reinstatements", op, json=body)
    assert answer.status_code == 204, answer.text


def test_operator_routes_take_only_operator_tokens_and_tenant_routes_never_take_them(api: Api) -> None:
    key = api.signup("acme")["api_key"]["secret"]
    op = operator_token(api)
    assert api.call("GET", "/api/v1/operator/appeals", op).status_code == 200
    for credential in (key, None, "ollmop_" + "x" * 43):
        refused = api.call("GET", "/api/v1/operator/appeals", credential)
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert api.call("GET", "/api/v1/me", op).status_code == 401  # an operator is no tenant's user
    assert api.call("GET", "/api/v1/me", key).status_code == 200


def test_a_revoked_operator_token_stops_at_once(api: Api) -> None:
    issued = api.services.command(api.services.app.issue_operator_token, name="ops", request_id="t")
    assert api.call("GET", "/api/v1/operator/appeals", issued.secret).status_code == 200
    api.services.command(api.services.app.revoke_operator_token, name="ops", token_id=issued.token_id, request_id="t")
    assert api.call("GET", "/api/v1/operator/appeals", issued.secret).status_code == 401


def test_a_suspended_tenant_keeps_its_appeal_and_export_routes_only(api: Api) -> None:
    signed = api.signup("acme")
    key, tenant = signed["api_key"]["secret"], signed["tenant"]["id"]
    op = operator_token(api)
    case = suspend(api, op, tenant, "tenant", tenant, "unpaid_invoice")
    assert case["reason_code"] == "unpaid_invoice" and case["status"] == "active" and case["appeal_window"] == "open"
    assert api.call("GET", "/api/v1/me", key).status_code == 403
    assert api.call("GET", "/api/v1/keys", key).status_code == 403
    listed = api.call("GET", "/api/v1/suspensions", key)
    assert listed.status_code == 200 and [s["id"] for s in listed.json()] == [case["id"]]
    assert api.call("GET", "/api/v1/appeals", key).json() == []
    export = api.call("POST", "/api/v1/exports", key)  # its data export stays reachable (terms §8)
    assert export.status_code == 202, export.text
    assert api.call("GET", f"/api/v1/exports/{export.json()['id']}", key).status_code == 200
    assert api.call("GET", "/api/v1/exports", key).status_code == 200
    reinstate(api, op, tenant, "tenant", tenant)
    assert api.call("GET", "/api/v1/me", key).status_code == 200
    assert api.call("GET", "/api/v1/suspensions", key).json()[0]["status"] == "lifted"


@pytest.mark.parametrize("code", ["", "late", "ABUSE"])
def test_an_unknown_reason_code_is_422_naming_the_field(api: Api, code: str) -> None:
    tenant = api.signup("acme")["tenant"]["id"]
    body = {"tenant_id": tenant, "kind": "tenant", "subject_id": tenant, "reason_code": code, "summary": "x"}
    answer = api.call("POST", "/api/v1/operator/suspensions", operator_token(api), json=body)
    assert answer.status_code == 422 and answer.json()["field"] == "reason_code", answer.text


def test_a_suspended_key_and_a_suspended_user_are_refused_until_reinstated(api: Api) -> None:
    signed = api.signup("acme")
    key, tenant, admin = signed["api_key"]["secret"], signed["tenant"]["id"], signed["admin"]["id"]
    other = api.call("POST", "/api/v1/keys", key, json={"name": "second", "scopes": ["admin:read"]}).json()
    op = operator_token(api)
    suspend(api, op, tenant, "api_key", other["id"], "shared_credentials")
    refused = api.call("GET", "/api/v1/me", other["secret"])
    assert refused.status_code == 403 and "suspended" in refused.json()["detail"]
    assert api.call("GET", "/api/v1/me", key).status_code == 200  # the holder's other key goes on
    listed = {k["id"]: k["status"] for k in api.call("GET", "/api/v1/keys", key).json()}
    assert listed[other["id"]] == "suspended"
    reinstate(api, op, tenant, "api_key", other["id"])
    assert api.call("GET", "/api/v1/me", other["secret"]).status_code == 200

    invited = api.call("POST", "/api/v1/invites", key, json={"email": "m@acme.example", "role": "member"}).json()
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": invited["token"], "name": "Mo"}).json()
    suspend(api, op, tenant, "user", joined["user_id"], "security_risk")
    assert api.call("GET", "/api/v1/me", joined["api_key"]["secret"]).status_code == 403
    lifted_by_admin = api.call("POST", f"/api/v1/users/{joined['user_id']}/reinstate", key, json={"reason": "mine"})
    assert lifted_by_admin.status_code == 403 and "operator" in lifted_by_admin.json()["detail"]
    reinstate(api, op, tenant, "user", joined["user_id"])
    assert api.call("GET", "/api/v1/me", joined["api_key"]["secret"]).status_code == 200
    # the operator cannot reach into another tenant: the subject looks missing
    other_tenant = api.signup("globex")["tenant"]["id"]
    body = {"tenant_id": other_tenant, "kind": "user", "subject_id": admin, "reason_code": "abuse", "summary": ""}
    assert api.call("POST", "/api/v1/operator/suspensions", op, json=body).status_code == 404


def test_suspensions_and_appeals_are_in_the_audit_log_by_the_operator(api: Api) -> None:
    signed = api.signup("acme")
    key, tenant = signed["api_key"]["secret"], signed["tenant"]["id"]
    op = operator_token(api)
    case = suspend(api, op, tenant, "tenant", tenant, "unpaid_invoice")
    filed = api.call("POST", "/api/v1/appeals", key, json={"suspension_id": case["id"], "statement": "paid today"})
    assert filed.status_code == 201, filed.text
    decision = {"outcome": "lifted", "reason": "ok"}
    decided = api.call("POST", f"/api/v1/operator/appeals/{filed.json()['id']}/decision", op, json=decision)
    assert decided.status_code == 201 and decided.json()["status"] == "lifted", decided.text
    rows = api.call("GET", "/api/v1/audit", key).json()
    actions = {row["action"]: row for row in rows}
    for action in ("suspension.imposed", "tenant.suspended", "appeal.filed", "appeal.decided", "tenant.reinstated"):
        assert action in actions, (action, sorted(actions))
    assert actions["suspension.imposed"]["actor"].startswith("operator:")
    assert "unpaid_invoice" in actions["suspension.imposed"]["summary"]
    assert "paid today" not in str(rows) and "spam burst" not in str(rows)  # sealed text stays out of rows
