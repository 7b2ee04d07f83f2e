"""A tenant's story with our terms (terms §18): accepted at signup by name; a material change is announced
with 30 days' notice; one tenant rejects it in time and is owed its refund; another keeps using the
service and so accepts it on its first request after the effective date. The clock is injected.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.services import Services, build_services
from api.settings import Settings
from domain.commands.terms import PrepaidPeriod
from domain.terms import TermsAnswer
from legal import documents
from tests.support.api_client import Api
from tests.support.clock import ManualClock

LEGAL = Path(documents.__file__).with_name("documents")


@pytest.fixture
def legal_dir(tmp_path: Path, clock: ManualClock) -> Path:
    """Our documents plus terms-2: a material change written today, effective 40 days from now."""
    folder = tmp_path / "legal"
    shutil.copytree(LEGAL, folder)
    today, effective = clock.now, clock.now + timedelta(days=40)
    (folder / "terms-2.md").write_text(
        f"---\ndocument: terms\nversion: 2\ntitle: OwnLLM Terms of Service\npublished_at: {today.isoformat()}\n"
        f"effective_at: {effective.isoformat()}\nmaterial: true\n---\n# OwnLLM Terms of Service\n\nv2\n"
    )
    return folder


@pytest.fixture
def story(make_settings: Callable[..., Settings], clock: ManualClock, legal_dir: Path) -> Iterator[Api]:
    services = build_services(make_settings(legal_dir=str(legal_dir)), clock=clock)
    try:
        with TestClient(create_app(services.settings, services)) as client:
            yield Api(client, services, clock)
    finally:
        services.close()


def _signup(api: Api, slug: str, terms: str = "terms-1") -> Any:
    body = {"slug": slug, "name": slug.title(), "admin_name": "Admin", "admin_email": f"a@{slug}.example",
            "accept_terms": terms}  # fmt: skip
    return api.call("POST", "/api/v1/tenants", json=body)


def _answers(services: Services, tenant_id: Any, version: int) -> list[Any]:
    answer_id = TermsAnswer.create_id(tenant_id, "terms", version)
    return [services.app.mapper.to_domain_event(e) for e in services.app.recorder.select_events(answer_id)]


@pytest.mark.parametrize("persistence", ["sqlite", "postgres"])
def test_terms_accepted_at_signup_then_a_change_rejected_by_one_and_accepted_by_use_by_another(
    story: Api, clock: ManualClock
):
    services = story.services
    listed = {d["ref"]: d for d in story.call("GET", "/api/v1/legal").json()}
    assert set(listed) == {"terms-1", "privacy-1", "dpa-1"}  # terms-2 is not public until announced
    assert story.call("GET", "/api/v1/legal/terms-2").status_code == 404
    text = story.call("GET", "/api/v1/legal/terms-1")
    assert text.headers["content-type"].startswith("text/markdown") and "## 18." in text.text

    refused = _signup(story, "stale", terms="terms-0")
    assert refused.status_code == 422 and "terms-1" in refused.text
    assert _signup(story, "nothing", terms="").status_code == 422  # explicit: an empty name is no acceptance
    acme, globex = _signup(story, "acme").json(), _signup(story, "globex").json()
    acme_key, globex_key = acme["api_key"]["secret"], globex["api_key"]["secret"]
    (accepted,) = _answers(services, acme["tenant"]["id"], 1)
    assert accepted.how == "explicit" and accepted.sha256 == listed["terms-1"]["sha256"]

    # The operator announces terms-2 ten days later: 30 days' notice, and it takes effect at day 40.
    clock.advance(days=10)
    services.command(services.app.publish_document, _op(), "terms-2")
    status = story.call("GET", "/api/v1/terms", acme_key).json()
    assert status["in_force"] == "terms-1" and status["accepted_version"] == 1
    assert [p["ref"] for p in status["pending"]] == ["terms-2"]

    # Acme's prepaid year (billing provides it) runs from day 0 to day 365: rejecting at day 20 refunds 345/365.
    start = clock.now - timedelta(days=10)
    services.app.prepaid_fees = lambda tenant_id: PrepaidPeriod(36_500, "EUR", start, start + timedelta(days=365))
    clock.advance(days=10)
    rejected = story.call("POST", "/api/v1/terms/terms-2/reject", acme_key)
    assert rejected.status_code == 201, rejected.text
    assert rejected.json() == {"ref": "terms-2", "refund_due_cents": 34_500}
    assert story.call("POST", "/api/v1/terms/terms-2/reject", acme_key).status_code == 409  # answered once

    # Globex keeps using the service: nothing is recorded a second before the effective date ...
    clock.now = start + timedelta(days=40) - timedelta(seconds=1)
    assert story.call("GET", "/api/v1/me", globex_key).status_code == 200
    time.sleep(0.2)  # the background recorder would have run by now
    assert _answers(services, globex["tenant"]["id"], 2) == []
    # ... and its first request from the effective instant on is acceptance by continued use, once.
    clock.advance(seconds=1)
    for _ in range(3):
        assert story.call("GET", "/api/v1/me", globex_key).status_code == 200
    assert _wait_for(lambda: len(_answers(services, globex["tenant"]["id"], 2)) == 1)
    (by_use,) = _answers(services, globex["tenant"]["id"], 2)
    assert by_use.how == "continued_use" and by_use.actor.startswith("key:")
    # the directory follows the recorded answer within its next poll
    assert _wait_for(lambda: story.call("GET", "/api/v1/terms", globex_key).json()["accepted_version"] == 2)
    assert _signup(story, "late", terms="terms-2").status_code == 201  # new signups accept the new terms


def test_a_material_change_cannot_be_published_with_less_than_30_days_notice(story: Api, clock: ManualClock):
    clock.advance(days=11)  # terms-2 takes effect at day 40: only 29 days' notice remain
    with pytest.raises(Exception, match="30 days' notice"):
        story.services.app.publish_document(_op(), "terms-2")


def _op() -> Any:
    from uuid import UUID

    from domain.context import SYSTEM, Ctx

    return Ctx(SYSTEM, UUID(int=0), "test")


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_rejecting_the_terms_ends_the_contract_and_forfeits_credits(story: Api, clock: ManualClock):
    """Terms §18 and §16: the rejection terminates the tenant (its members erased within 30 days), credits go."""
    services = story.services
    acme = _signup(story, "acme").json()
    tenant = UUID(acme["tenant"]["id"])
    services.app.purchase_credits(tenant, 1_000, "pi_acme", clock.now)
    clock.advance(days=1)
    services.command(services.app.publish_document, _op(), "terms-2")
    clock.advance(days=1)
    rejected = story.call("POST", "/api/v1/terms/terms-2/reject", acme["api_key"]["secret"])
    assert rejected.status_code == 201 and rejected.json()["refund_due_cents"] == 0  # no plan prepaid
    assert _wait_for(lambda: services.directory.tenants[tenant].terminated)
    refused = story.call("GET", "/api/v1/me", acme["api_key"]["secret"])
    assert refused.status_code == 403 and "terminated" in refused.text
    assert _wait_for(lambda: services.app.credit_ledger(tenant) is not None and _forfeited(services, tenant))


def _forfeited(services: Services, tenant: Any) -> bool:
    ledger = services.app.credit_ledger(tenant)
    return ledger is not None and ledger.balance_micro(services.app.clock()) == 0
