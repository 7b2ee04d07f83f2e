"""Who minted a key: recorded on ``ApiKey.Issued`` (version 2), unknown for keys stored before."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from api.services import Services
from domain.api_key import ApiKey
from domain.context import SYSTEM, Caller, Ctx
from domain.errors import PermissionDenied
from domain.roles import SCOPES_BY_ROLE, Role

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1" / "stored_events.jsonl"
ISSUED_TOPIC = "domain.api_key:ApiKey.Issued"


def test_keys_stored_before_issuers_were_recorded_load_with_no_issuer(services: Services) -> None:
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line]
    issued = [r for r in rows if r["topic"] == ISSUED_TOPIC]
    assert issued, "the v1 fixture holds issued keys"
    for row in issued:
        assert b"issued_by" not in base64.b64decode(row["state"])  # written by the older code
        stored = StoredEvent(UUID(row["originator_id"]), row["originator_version"], row["topic"],
                             base64.b64decode(row["state"]))  # fmt: skip
        event = services.app.mapper.to_domain_event(stored)
        assert isinstance(event, ApiKey.Issued)
        assert event.issued_by is None


def test_an_admins_key_for_another_user_is_inference_only_and_names_the_admin(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    tenant, ada = acme.tenant_id, acme.admin_user_id
    system = Ctx(SYSTEM, tenant, "r2")
    bob = app.accept_invite(
        token=app.invite_user(system, email="bob@acme.example", role="admin").secret, name="Bob", request_id="r3"
    ).user_id
    admin_scopes = frozenset(SCOPES_BY_ROLE[Role.ADMIN])
    as_ada = Ctx(f"user:{ada}", tenant, "r4", Caller(ada, Role.ADMIN, admin_scopes))
    before = app.recorder.max_notification_id()

    for scope in sorted(admin_scopes - {"inference"}):
        with pytest.raises(PermissionDenied, match="only the 'inference' scope"):
            app.issue_api_key(as_ada, user_id=bob, name="x", scopes=["inference", scope])
    assert app.recorder.max_notification_id() == before

    for_bob = app.issue_api_key(as_ada, user_id=bob, name="ops", scopes=["inference"])
    own = app.issue_api_key(as_ada, user_id=ada, name="mine", scopes=sorted(admin_scopes))
    by_operator = app.issue_api_key(system, user_id=bob, name="cli", scopes=sorted(admin_scopes))
    issuers = {k: app.repository.get(k).issued_by for k in (for_bob.id, own.id, by_operator.id, acme.admin_key.id)}
    assert issuers == {for_bob.id: ada, own.id: ada, by_operator.id: None, acme.admin_key.id: None}
