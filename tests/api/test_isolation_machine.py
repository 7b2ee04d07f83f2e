"""Random command sequences over two tenants: keys, users and tenants never leak into each other.

Invariants after every step:
- a key authenticates exactly when it is unrevoked, unexpired and its user is neither removed nor
  suspended (suspended users get 403, the rest 401);
- tenant A's credentials never read or change tenant B's objects (404, and no event written);
- each command leaves exactly the events it should (counted on the notification log).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from litestar.testing import TestClient

from api.app import create_app
from api.services import build_services
from api.settings import Settings, load_settings
from tests.support.clock import ManualClock
from tests.support.postgres import create_schema
from tests.support.terms import TERMS

TENANTS = ("alpha", "bravo")


@dataclass
class ModelUser:
    tenant: str
    id: str
    status: str = "active"  # active, suspended, removed


@dataclass
class ModelKey:
    tenant: str
    owner: ModelUser
    id: str
    secret: str
    revoked: bool = False
    expires_at: Any = None


class TwoTenants(RuleBasedStateMachine):
    """The state machine: a model of who may do what, checked against the real app."""

    users = Bundle("users")
    keys = Bundle("keys")

    settings_factory: Callable[..., Settings] = staticmethod(lambda **kw: load_settings({}, inference=False, **kw))

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = ManualClock()
        self.services = build_services(
            self.settings_factory(var_dir=self.tmp.name), start_runner=False, clock=self.clock
        )
        self.client = TestClient(create_app(self.services.settings, self.services))
        self.client.__enter__()
        self.admins: dict[str, ModelKey] = {}
        self.all_keys: list[ModelKey] = []
        self.counter = 0

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)
        self.tmp.cleanup()

    # -- helpers -----------------------------------------------------------------------------

    def call(self, method: str, path: str, key: ModelKey | None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {key.secret}"} if key else {}
        return self.client.request(method, path, headers=headers, **kwargs)

    def events(self) -> int:
        return self.services.app.recorder.max_notification_id() or 0

    def expect_events(self, before: int, count: int) -> None:
        assert self.events() - before == count, f"expected {count} new events, got {self.events() - before}"

    def usable(self, key: ModelKey) -> bool:
        expired = key.expires_at is not None and key.expires_at <= self.clock.now
        return not key.revoked and not expired and key.owner.status == "active"

    # -- rules ---------------------------------------------------------------------------------

    @initialize(target=users)
    def sign_up_both(self) -> Any:
        for slug in TENANTS:
            body = {
                "slug": slug,
                "name": slug,
                "admin_name": "Admin",
                "admin_email": f"admin@{slug}.example",
                "accept_terms": TERMS,
            }
            answer = self.client.post("/api/v1/tenants", json=body).json()
            admin = ModelUser(slug, answer["admin"]["id"])
            key = ModelKey(slug, admin, answer["api_key"]["id"], answer["api_key"]["secret"])
            self.admins[slug] = key
            self.all_keys.append(key)
        return admin

    @rule(target=users, tenant=st.sampled_from(TENANTS), role=st.sampled_from(["member", "billing", "auditor"]))
    def invite_and_accept(self, tenant: str, role: str) -> ModelUser:
        self.counter += 1
        before = self.events()
        email = f"user{self.counter}@{tenant}.example"
        invite = self.call("POST", "/api/v1/invites", self.admins[tenant], json={"email": email, "role": role})
        assert invite.status_code == 201, invite.text
        joined = self.client.post("/api/v1/invites/accept", json={"token": invite.json()["token"], "name": "U"})
        assert joined.status_code == 201, joined.text
        self.expect_events(before, 4)  # Invite.Issued, Invite.Accepted, User.Joined, ApiKey.Issued
        user = ModelUser(tenant, joined.json()["user_id"])
        key = joined.json()["api_key"]
        self.all_keys.append(ModelKey(tenant, user, key["id"], key["secret"]))
        return user

    @rule(target=keys, user=users, expires_in=st.one_of(st.none(), st.integers(min_value=1, max_value=120)))
    def admin_issues_key(self, user: ModelUser, expires_in: int | None) -> ModelKey:
        before = self.events()
        body: dict[str, Any] = {"name": "k", "scopes": ["admin:read"], "user_id": user.id}
        expires_at = None
        if expires_in is not None:
            expires_at = self.clock.now + timedelta(minutes=expires_in)
            body["expires_at"] = expires_at.isoformat()
        admin = self.admins[user.tenant]
        answer = self.call("POST", "/api/v1/keys", admin, json=body)
        if user.status != "active" or user.id != admin.owner.id:
            # An inactive user gets no key (409); another user's key is inference-only (403).
            assert answer.status_code == (409 if user.status != "active" else 403), answer.text
            self.expect_events(before, 0)
            key = ModelKey(user.tenant, user, "none", "ollm_never-issued", revoked=True)
        else:
            assert answer.status_code == 201, answer.text
            self.expect_events(before, 1)
            key = ModelKey(user.tenant, user, answer.json()["id"], answer.json()["secret"], expires_at=expires_at)
        self.all_keys.append(key)
        return key

    @rule(key=keys)
    def admin_revokes_key(self, key: ModelKey) -> None:
        if key.id == "none":
            return
        before = self.events()
        answer = self.call("DELETE", f"/api/v1/keys/{key.id}", self.admins[key.tenant])
        assert answer.status_code == (409 if key.revoked else 204), answer.text
        self.expect_events(before, 0 if key.revoked else 1)
        key.revoked = True

    @rule(user=users, action=st.sampled_from(["suspend", "reinstate", "remove"]))
    def admin_changes_user(self, user: ModelUser, action: str) -> None:
        admin = self.admins[user.tenant]
        if user.id == admin.owner.id:
            return  # the last admin cannot be suspended or removed: covered in the narrative test
        before = self.events()
        if action == "remove":
            answer = self.call("DELETE", f"/api/v1/users/{user.id}", admin)
        else:
            answer = self.call("POST", f"/api/v1/users/{user.id}/{action}", admin, json={"reason": "test"})
        allowed = {
            "suspend": user.status == "active",
            "reinstate": user.status == "suspended",
            "remove": user.status != "removed",
        }[action]
        assert answer.status_code == ((204 if action == "remove" else 201) if allowed else 409), answer.text
        self.expect_events(before, 1 if allowed else 0)
        if allowed:
            user.status = {"suspend": "suspended", "reinstate": "active", "remove": "removed"}[action]

    @precondition(lambda self: len(self.admins) == 2)
    @rule(user=users, key=keys, action=st.sampled_from(["read", "suspend", "revoke_key", "issue_for"]))
    def cross_tenant_attempt(self, user: ModelUser, key: ModelKey, action: str) -> None:
        attacker = self.admins[TENANTS[1] if user.tenant == TENANTS[0] else TENANTS[0]]
        before = self.events()
        if action == "read":
            answer = self.call("GET", f"/api/v1/users/{user.id}", attacker)
        elif action == "suspend":
            answer = self.call("POST", f"/api/v1/users/{user.id}/suspend", attacker, json={})
        elif action == "issue_for":
            answer = self.call("POST", "/api/v1/keys", attacker, json={"name": "x", "scopes": ["admin:read"],
                                                                        "user_id": user.id})  # fmt: skip
        else:
            if key.tenant == attacker.tenant or key.id == "none":
                return
            answer = self.call("DELETE", f"/api/v1/keys/{key.id}", attacker)
        assert answer.status_code == 404, (action, answer.status_code, answer.text)
        self.expect_events(before, 0)

    @rule(minutes=st.integers(min_value=1, max_value=90))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def keys_authenticate_exactly_when_usable(self) -> None:
        for key in self.all_keys:
            answer = self.call("GET", "/api/v1/me", key)
            if self.usable(key):
                assert answer.status_code == 200, answer.text
                assert answer.json()["tenant"]["slug"] == key.tenant
            elif key.owner.status == "suspended" and not key.revoked and key.id != "none":
                expired = key.expires_at is not None and key.expires_at <= self.clock.now
                assert answer.status_code == (401 if expired else 403), answer.text
            else:
                assert answer.status_code == 401, answer.text

    @invariant()
    def listings_stay_inside_the_tenant(self) -> None:
        for slug, admin in self.admins.items():
            listed = self.call("GET", "/api/v1/keys?all_users=true", admin).json()
            ours = {k.id for k in self.all_keys if k.tenant == slug and k.id != "none"}
            assert {k["id"] for k in listed} == ours


def test_two_tenants(make_settings: Callable[..., Settings], persistence: str) -> None:
    """The machine on each event store; on PostgreSQL every run gets a fresh schema."""
    fresh = make_settings

    if persistence == "postgres":
        dsn = make_settings().postgres_dsn

        def fresh(**overrides: Any) -> Settings:
            return make_settings(postgres_schema=create_schema(dsn), **overrides)

    machine = type("Machine", (TwoTenants,), {"settings_factory": staticmethod(fresh)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25 if persistence == "sqlite" else 10,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
