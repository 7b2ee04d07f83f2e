"""A terminated tenant's activity records (audit rows, usage counts) go when the retention of ITS jurisdiction
ends: not a second before, once, for good (a rebuild does not bring them back), and the trail still verifies."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from api.cli_audit import catch_up_ledger, verify_database
from api.ledger_keys import public_keys
from api.services import Services, build_services
from api.settings import Settings
from api.sweep_tasks import build_sweeper
from domain.application import SignedUp
from domain.context import Ctx
from domain.retention import ActivityRetention
from policies.retention import fiscal_year
from projections.audit_log import AuditFilter
from projections.rebuild import rebuild
from tests.support.clock import ManualClock

TICK = timedelta(microseconds=1)


def _tenant(services: Services, slug: str) -> SignedUp:
    signed = services.command(services.app.signup, slug=slug, name=slug, admin_name="A",
                              admin_email=f"a@{slug}.example", request_id="r")  # fmt: skip
    for tokens in (3, 5):
        services.command(
            services.app.record_usage, tenant_id=signed.tenant_id, user_id=signed.admin_user_id,
            key_id=signed.admin_key.id, agent_id=None, model="m", endpoint="chat", stream=False, status="ok",
            prompt_tokens=tokens, completion_tokens=1, ttft_ms=1, duration_ms=1, request_id=str(uuid.uuid4()),
        )  # fmt: skip
    return signed


def _audit(services: Services, tenant_id: UUID) -> list[tuple[int, str]]:
    rows = services.audit.page(AuditFilter(tenant_id=tenant_id), limit=10_000, order="asc").rows
    return [(r.position, r.entry.action) for r in rows]


def test_a_terminated_tenants_activity_goes_with_its_jurisdictions_retention(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    settings = make_settings()  # the seller (and so the default) is France: 10 years
    services = build_services(settings, start_runner=False, clock=clock)
    try:
        gone, stays = _tenant(services, "fjordgone"), _tenant(services, "staying")
        ctx = Ctx(f"user:{gone.admin_user_id}", gone.tenant_id, "r")
        services.command(services.app.set_jurisdiction, ctx, "NO")  # Norway: 5 years
        erase_by = services.command(services.app.terminate_tenant, ctx, "contract ended")
        sweeper = build_sweeper(services)
        clock.now = erase_by
        sweeper.run_once(clock.now)  # the members and the tenant's own data are erased
        assert services.usage.query(gone.tenant_id) and len(_audit(services, gone.tenant_id)) > 3
        kept = (_audit(services, stays.tenant_id), services.usage.query(stays.tenant_id))

        end = datetime(fiscal_year(erase_by) + 1 + 5, 1, 1, tzinfo=UTC)
        clock.now = end - TICK
        assert sweeper.run_once(clock.now)["activity-retention"] == 0
        assert services.usage.query(gone.tenant_id)

        clock.now = end
        assert sweeper.run_once(clock.now)["activity-retention"] == 1
        assert sweeper.run_once(clock.now)["activity-retention"] == 0
        ended = services.app.repository.get(ActivityRetention.create_id(gone.tenant_id))
        assert (ended.fiscal_year, ended.jurisdiction) == (fiscal_year(erase_by), "NO")

        def purged() -> None:
            assert services.usage.query(gone.tenant_id) == []
            left = _audit(services, gone.tenant_id)
            assert [action for _, action in left] == ["retention.activity_ended"], left  # only the end itself
            for tenant in (gone.tenant_id, stays.tenant_id):  # X-Total-Count from the counts moves with the purge
                assert services.audit.count(AuditFilter(tenant_id=tenant)) == (len(_audit(services, tenant)), True)
            assert (_audit(services, stays.tenant_id), services.usage.query(stays.tenant_id)) == kept

        purged()
        for name in ("audit", "usage"):  # a rebuild replays the end too: nothing comes back
            rebuild(services.read_models.tracked_named(name), services.runner.log,
                    services.app.mapper.to_domain_event)  # fmt: skip
        purged()

        # The events stay in the store: the integrity ledger still verifies.
        catch_up_ledger(services)
        services.ledger.checkpoint()
        assert services.ledger.signer is not None
        lines, ok = verify_database(services, public_keys(services.ledger.signer, settings), services.ledger.origin)
        assert ok, lines
    finally:
        services.close()
