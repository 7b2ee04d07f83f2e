"""The compliance officer's audit log, told as a tenant's story through the HTTP API."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.support.api_client import Api


def _join(api: Api, admin_key: str, email: str, role: str, name: str) -> tuple[str, str]:
    """Invite, accept, and set the role; the new user's key and id."""
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": email, "role": "member"}).json()["token"]
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": name}).json()
    user_id = joined["user_id"]
    if role != "member":
        changed = api.call("POST", f"/api/v1/users/{user_id}/role", admin_key, json={"role": role})
        assert changed.status_code == 201, changed.text
    key = joined["api_key"]["secret"]
    if role in ("compliance_officer", "auditor"):  # the first key holds only self-service scopes
        audit_key = api.call("POST", "/api/v1/keys", key, json={"name": "audit", "scopes": ["audit:read"]})
        assert audit_key.status_code == 201, audit_key.text
        key = audit_key.json()["secret"]
    return key, user_id


def _audit(api: Api, key: str, query: str = "") -> Any:
    return api.call("GET", f"/api/v1/audit{query}", key)


def test_a_compliance_officer_reads_the_trail(api: Api) -> None:
    # Ada signs up Acme; Carol joins as compliance officer, Bob as member.
    signup = api.signup("acme", email="ada@acme.example", name="Ada")
    admin_key, ada_id = signup["api_key"]["secret"], signup["admin"]["id"]
    carol_key, carol_id = _join(api, admin_key, "carol@acme.example", "compliance_officer", "Carol")
    bob_key, bob_id = _join(api, admin_key, "bob@acme.example", "member", "Bob")

    # Bob issues and revokes a laptop key; Ada suspends him with a reason that names a person.
    laptop = api.call("POST", "/api/v1/keys", bob_key, json={"name": "laptop", "scopes": ["inference"]}).json()
    assert api.call("DELETE", f"/api/v1/keys/{laptop['id']}", bob_key).status_code == 204
    suspended = api.call("POST", f"/api/v1/users/{bob_id}/suspend", admin_key, json={"reason": "per Eve Smith"})
    assert suspended.status_code == 201

    # Carol reads the trail, newest first: the suspension is on top, attributed to Ada's key.
    page = _audit(api, carol_key)
    assert page.status_code == 200, page.text
    rows = page.json()
    assert rows[0]["action"] == "user.suspended"
    assert rows[0]["subject_id"] == bob_id and rows[0]["subject_name"] == "Bob"
    assert rows[0]["actor"].startswith("key:") and rows[0]["actor_name"].startswith("Ada")
    assert int(page.headers["X-Total-Count"]) == len(rows) and page.headers["X-Total-Count-Exact"] == "true"
    positions = [r["position"] for r in rows]
    assert positions == sorted(positions, reverse=True)
    assert rows[-1]["action"] == "tenant.registered"
    # The sealed reason never reaches the log.
    assert "Eve" not in page.text

    # Filters: exact action, prefix, subject, request id, actor (a user's keys), time.
    revoked = _audit(api, carol_key, "?action=api_key.revoked").json()
    assert [(r["action"], r["subject_id"]) for r in revoked] == [("api_key.revoked", laptop["id"])]
    keys = _audit(api, carol_key, "?action=api_key.*&order=asc").json()
    assert {r["action"] for r in keys} == {"api_key.issued", "api_key.revoked"}
    about_bob = _audit(api, carol_key, f"?subject={bob_id}&order=asc").json()
    assert [r["action"] for r in about_bob] == ["user.joined", "user.suspended"]
    by_bob = _audit(api, carol_key, f"?actor={bob_id}").json()
    assert {r["action"] for r in by_bob} >= {"api_key.issued", "api_key.revoked"}
    one = _audit(api, carol_key, f"?request_id={rows[0]['request_id']}").json()
    assert [r["position"] for r in one] == [rows[0]["position"]]
    assert _audit(api, carol_key, "?since=2999-01-01T00:00:00Z").json() == []
    assert _audit(api, carol_key, "?since=2000-01-01T00:00:00").status_code == 422  # no timezone

    # Bob's history: what was done to him and what he did, oldest first.
    history = api.call("GET", f"/api/v1/audit/subjects/{bob_id}/history", carol_key).json()
    actions = [r["action"] for r in history]
    assert set(actions[:2]) == {"invite.accepted", "user.joined"}  # Bob accepted (as actor), then joined
    assert "api_key.revoked" in actions and actions[-1] == "user.suspended"

    # Members and billing may not read it; an auditor may read and export but change nothing.
    assert _audit(api, bob_key).status_code == 403
    billing_key, _ = _join(api, admin_key, "bill@acme.example", "billing", "Bill")
    assert _audit(api, billing_key).status_code == 403
    auditor_key, _ = _join(api, admin_key, "dan@acme.example", "auditor", "Dan")
    assert _audit(api, auditor_key).status_code == 200
    assert api.call("POST", "/api/v1/invites", auditor_key, json={"email": "x@acme.example"}).status_code == 403
    assert api.call("DELETE", f"/api/v1/users/{bob_id}", auditor_key).status_code == 403
    assert _audit(api, admin_key).status_code == 200

    # Another tenant sees none of it, and Acme's compliance officer none of theirs.
    other = api.signup("globex", email="hank@globex.example", name="Hank")
    theirs = _audit(api, other["api_key"]["secret"]).json()
    assert all(r["subject_id"] not in {bob_id, carol_id, ada_id} for r in theirs)
    assert [r["action"] for r in theirs].count("tenant.registered") == 1
    assert all(r["subject_id"] != other["admin"]["id"] for r in _audit(api, carol_key, "?limit=500").json())
    assert api.call("GET", f"/api/v1/audit/subjects/{bob_id}/history", other["api_key"]["secret"]).json() == []


def test_pages_walk_both_ways_without_gaps(api: Api) -> None:
    signup = api.signup("pages", email="ada@pages.example", name="Ada")
    admin_key = signup["api_key"]["secret"]
    for n in range(12):
        api.call("POST", "/api/v1/keys", admin_key, json={"name": f"k{n}", "scopes": ["inference"]})
    everything = [r["position"] for r in _audit(api, admin_key, "?limit=500").json()]

    seen, url = [], "/api/v1/audit?limit=5"
    while url:
        page = api.call("GET", url, admin_key)
        seen += [r["position"] for r in page.json()]
        url = _link(page.headers.get("link", ""), "next")
    assert seen == everything  # newest first, no gap, no repeat

    last_page = api.call("GET", f"/api/v1/audit?limit=5&before={everything[-1] + 1}&order=desc", admin_key)
    back, url = [], _link(last_page.headers.get("link", ""), "prev")
    back = [r["position"] for r in last_page.json()]
    while url:
        page = api.call("GET", url, admin_key)
        back = [r["position"] for r in page.json()] + back
        url = _link(page.headers.get("link", ""), "prev")
    assert back == everything


def test_export_is_a_spreadsheet_and_is_itself_audited(api: Api) -> None:
    signup = api.signup("sheets", email="ada@sheets.example", name='=HYPERLINK("http://evil")')
    admin_key = signup["api_key"]["secret"]
    api.call("POST", "/api/v1/keys", admin_key, json={"name": "@SUM(A1)", "scopes": ["inference"]})

    exported = api.call("GET", "/api/v1/audit/export?format=csv", admin_key)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    body = exported.content.decode("utf-8")
    assert body.startswith("\ufeff")
    table = list(csv.reader(io.StringIO(body[1:])))
    assert table[0][:5] == ["position", "time", "actor", "actor_name", "action"]
    cells = [cell for row in table[1:] for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells), cells
    assert any(cell.startswith("'=HYPERLINK") for cell in cells)

    lines = api.call("GET", "/api/v1/audit/export?format=jsonl&action=api_key.*", admin_key).text.splitlines()
    assert {json.loads(line)["action"] for line in lines} == {"api_key.issued"}

    exports = _audit(api, admin_key, "?action=audit.exported&order=asc").json()
    assert [r["summary"].split(":")[0] for r in exports] == ["audit log exported as csv", "audit log exported as jsonl"]
    assert "action=api_key.%2A" in exports[1]["summary"]


def test_bad_queries_are_refused_clearly(api: Api) -> None:
    signup = api.signup("strict", email="ada@strict.example", name="Ada")
    admin_key = signup["api_key"]["secret"]
    for query in ("?action=*", "?limit=0", "?after=-1", f"?subject={uuid.uuid4().hex[:5]}", "?order=sideways",
                  f"?actor={'x' * 201}", "?until=yesterday"):  # fmt: skip
        answer = _audit(api, admin_key, query)
        assert answer.status_code in (400, 422), (query, answer.status_code)
        assert answer.headers["content-type"].startswith("application/problem+json")
    refused = api.call("GET", "/api/v1/audit/export?format=xml", admin_key)
    assert refused.status_code in (400, 422) and refused.headers["content-type"].startswith("application/problem+json")
    assert _audit(api, admin_key, "?action=audit.exported").json() == []  # a refused export is not recorded


def _link(header: str, rel: str) -> str:
    for part in header.split(","):
        if f'rel="{rel}"' in part:
            url = part.split(";")[0].strip()[1:-1]
            return url[url.index("/api/") :]
    return ""


def test_an_auditor_replays_the_tenant_as_it_was(api: Api) -> None:
    # Events carry the time they were recorded; the auditor picks moments from the trail itself.
    signup = api.signup("replay", email="ada@replay.example", name="Ada")
    admin_key = signup["api_key"]["secret"]
    bob_key, bob_id = _join(api, admin_key, "bob@replay.example", "member", "Bob")
    laptop = api.call("POST", "/api/v1/keys", bob_key, json={"name": "laptop", "scopes": ["inference"]}).json()
    api.call("POST", f"/api/v1/users/{bob_id}/role", admin_key, json={"role": "billing"})
    api.call("DELETE", f"/api/v1/keys/{laptop['id']}", admin_key)
    trail = _audit(api, admin_key, "?order=asc").json()
    monday = next(r["time"] for r in trail if r["subject_id"] == laptop["id"])
    first = datetime.fromisoformat(trail[0]["time"])
    before_signup = (first - timedelta(microseconds=1)).isoformat()

    then = api.call("GET", "/api/v1/audit/replay", admin_key, params={"as_of": monday})
    assert then.status_code == 200, then.text
    past = then.json()
    assert {u["name"]: u["role"] for u in past["users"]} == {"Ada": "admin", "Bob": "member"}
    assert {k["id"]: k["status"] for k in past["keys"]}[laptop["id"]] == "active"
    latest = trail[-1]["time"]
    now = api.call("GET", "/api/v1/audit/replay", admin_key, params={"as_of": latest}).json()
    assert {u["name"]: u["role"] for u in now["users"]}["Bob"] == "billing"
    assert {k["id"]: k["status"] for k in now["keys"]}[laptop["id"]] == "revoked"
    assert 0 < past["position"] < now["position"] <= now["head"]

    nothing = api.call("GET", "/api/v1/audit/replay", admin_key, params={"as_of": before_signup}).json()
    assert (nothing["tenant"], nothing["users"], nothing["position"]) == (None, [], 0)
    assert (
        api.call("GET", "/api/v1/audit/replay", admin_key, params={"as_of": "2027-01-01T00:00:00"}).status_code == 422
    )
    assert api.call("GET", "/api/v1/audit/replay", bob_key, params={"as_of": monday}).status_code == 403


def test_the_server_formatted_export_equals_the_row_by_row_one(api: Api) -> None:
    """On PostgreSQL the CSV comes from COPY; it must say exactly what the row-by-row writer says."""
    from api.audit_export import csv_export, csv_lines
    from api.audit_names import Names
    from projections.audit_log import AuditFilter

    signup = api.signup("copies", email="ada@copies.example", name="=Ada")
    admin_key = signup["api_key"]["secret"]
    api.call("POST", "/api/v1/keys", admin_key, json={"name": "+plus", "scopes": ["inference"]})
    tenant_id = uuid.UUID(signup["tenant"]["id"])
    key_id = api.services.directory.tenant_keys(tenant_id)[0].id
    for n in range(3):
        api.services.app.record_usage(
            tenant_id=tenant_id, user_id=uuid.UUID(signup["admin"]["id"]), key_id=key_id, agent_id=None, model="m",
            endpoint="chat", stream=False, status="ok", prompt_tokens=n, completion_tokens=1, ttft_ms=1,
            duration_ms=1, request_id=f"r{n}",
        )  # fmt: skip
    assert _audit(api, admin_key).status_code == 200  # settles the log
    names, where = Names(api.services.directory, tenant_id), AuditFilter(tenant_id)
    served = b"".join(csv_export(api.services.audit, where, names)).decode()
    written = "".join(csv_lines(api.services.audit.scan_raw(where), names))
    assert list(csv.reader(io.StringIO(served))) == list(csv.reader(io.StringIO(written)))
    assert "3 requests, 3 prompt and 3 completion tokens on m" in served and "'=Ada" in served
    prefix = AuditFilter(tenant_id, action_prefix="api_key.")
    only_keys = list(csv.reader(io.StringIO(b"".join(csv_export(api.services.audit, prefix, names)).decode()[1:])))
    assert {row[4] for row in only_keys[1:]} == {"api_key.issued"}
