"""A tenant's jurisdiction: the operator's default until its admin sets one; checked, role-gated, shown."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from api.settings import SettingsError, load_settings
from domain.tenant import Tenant
from tests.api.test_erasure_end_to_end import sweeper
from tests.support.api_client import Api


def test_an_admin_sets_the_jurisdiction_and_everyone_reads_it(api: Api) -> None:
    admin = api.signup("fjord")["api_key"]["secret"]
    invite = api.call("POST", "/api/v1/invites", admin, json={"email": "m@fjord.example", "role": "member"})
    member = api.call("POST", "/api/v1/invites/accept", json={"token": invite.json()["token"], "name": "M"})
    member_key = member.json()["api_key"]["secret"]

    # Until the admin says otherwise, the operator's default (here the seller's, France) keeps its records.
    tenant = api.call("GET", "/api/v1/tenant", member_key).json()
    assert (tenant["jurisdiction"], tenant["jurisdiction_default"]) == ("FR", True)

    refused = api.call("PUT", "/api/v1/tenant/jurisdiction", member_key, json={"jurisdiction": "NO"})
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("application/problem+json")

    for bad in ("Norway", "XK", "EU", "n0", ""):
        problem = api.call("PUT", "/api/v1/tenant/jurisdiction", admin, json={"jurisdiction": bad})
        assert problem.status_code in (400, 422), (bad, problem.text)
        assert problem.headers["content-type"].startswith("application/problem+json"), problem.text
    unknown_field = api.call("PUT", "/api/v1/tenant/jurisdiction", admin, json={"jurisdiction": "NO", "x": 1})
    assert unknown_field.status_code in (400, 422)

    saved = api.call("PUT", "/api/v1/tenant/jurisdiction", admin, json={"jurisdiction": " no "})
    assert saved.status_code == 200, saved.text
    assert (saved.json()["jurisdiction"], saved.json()["jurisdiction_default"]) == ("NO", False)
    me = api.call("GET", "/api/v1/me", member_key).json()
    assert me["tenant"]["jurisdiction"] == "NO"

    # Setting it again records nothing more.
    before = api.services.runner.log.head()
    assert api.call("PUT", "/api/v1/tenant/jurisdiction", admin, json={"jurisdiction": "NO"}).status_code == 200
    assert api.services.runner.log.head() == before
    assert api.services.app.repository.get(Tenant.create_id("fjord")).jurisdiction == "NO"  # replayed

    # The tenant's export says it too.
    export_id = api.call("POST", "/api/v1/exports", admin).json()["id"]
    sweeper(api).run_once()
    zipped = api.call("GET", f"/api/v1/exports/{export_id}/download", admin)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
        tenant_json = json.loads(zf.read("tenant.json"))
    assert (tenant_json["jurisdiction"], tenant_json["jurisdiction_default"]) == ("NO", False)


def test_the_default_jurisdiction_is_checked_at_start() -> None:
    assert load_settings({}, inference=False, default_jurisdiction="se").activity_jurisdiction == "SE"
    assert load_settings({}, inference=False, seller_jurisdiction="NO").activity_jurisdiction == "NO"
    with pytest.raises(SettingsError, match="OWNLLM_DEFAULT_JURISDICTION"):
        load_settings({}, inference=False, default_jurisdiction="ZZ")
