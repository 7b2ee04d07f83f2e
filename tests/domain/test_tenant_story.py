"""A tenant's keys, told at the application level on both stores: what a suspension stops and what it does not."""

from __future__ import annotations

import pytest

from api.services import Services
from domain.api_key import ApiKey
from domain.context import Ctx
from domain.errors import Conflict, InvalidState, LastAdmin, NotFound
from domain.user import User


def test_a_suspended_tenant_issues_nothing_until_reinstated(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    ctx = Ctx(actor=f"user:{acme.admin_user_id}", tenant_id=acme.tenant_id, request_id="r2")

    issued = app.issue_api_key(ctx, user_id=acme.admin_user_id, name="laptop", scopes=["inference"])
    assert issued.secret.startswith("ollm_")

    app.suspend_tenant(Ctx("system", acme.tenant_id, "r3"), reason="unpaid invoice")
    with pytest.raises(InvalidState, match="tenant is suspended"):
        app.issue_api_key(ctx, user_id=acme.admin_user_id, name="desktop", scopes=["inference"])
    with pytest.raises(InvalidState, match="tenant is suspended"):
        app.issue_pairing_key(ctx)

    app.reinstate_tenant(Ctx("system", acme.tenant_id, "r4"), reason="paid")
    again = app.issue_api_key(ctx, user_id=acme.admin_user_id, name="desktop", scopes=["inference"])
    assert again.id != issued.id


def test_keys_are_issued_only_to_users_of_the_callers_tenant(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    globex = app.signup(
        slug="globex", name="Globex", admin_name="Gil", admin_email="gil@globex.example", request_id="r2"
    )
    acme_ctx = Ctx(actor=f"user:{acme.admin_user_id}", tenant_id=acme.tenant_id, request_id="r3")
    with pytest.raises(NotFound, match="user not found"):
        app.issue_api_key(acme_ctx, user_id=globex.admin_user_id, name="stolen", scopes=["inference"])
    with pytest.raises(NotFound, match="user not found"):
        app.issue_api_key(acme_ctx, user_id=acme.tenant_id, name="not a user", scopes=["inference"])
    unknown = Ctx(actor="system", tenant_id=globex.admin_user_id, request_id="r4")
    with pytest.raises(NotFound, match="tenant not found"):
        app.issue_api_key(unknown, user_id=globex.admin_user_id, name="x", scopes=["inference"])


def test_two_requests_changing_the_same_key_at_once_give_a_conflict_not_a_crash(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    ctx = Ctx(actor=f"user:{acme.admin_user_id}", tenant_id=acme.tenant_id, request_id="r2")
    issued = app.issue_api_key(ctx, user_id=acme.admin_user_id, name="laptop", scopes=["inference"])
    # The first request has loaded the key when the second one revokes it and saves first.
    stale = app._load(ApiKey, issued.id, acme.tenant_id)
    stale.revoke(ctx, "lost laptop")
    app.revoke_api_key(ctx, issued.id, "rotated")
    with pytest.raises(Conflict, match="changed by another request"):
        app._save(stale)
    assert app._load(ApiKey, issued.id, acme.tenant_id).revoked  # the winner's revocation stands, once


def test_two_admins_suspending_each_other_at_once_leave_the_tenant_an_admin(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    tenant_id, ada = acme.tenant_id, acme.admin_user_id
    as_ada = Ctx(actor=f"user:{ada}", tenant_id=tenant_id, request_id="r2")
    invite = app.invite_user(as_ada, email="bob@acme.example", role="admin")
    bob = app.accept_invite(token=invite.secret, name="Bob", request_id="r3").user_id
    as_bob = Ctx(actor=f"user:{bob}", tenant_id=tenant_id, request_id="r4")
    assert app._tenant(tenant_id).admins == {ada, bob}

    # Both requests read the tenant before either saves: each sees two admins, so each may go ahead...
    tenant_for_ada, bob_user = app._load_with_tenant(User, bob, tenant_id)
    tenant_for_bob, ada_user = app._load_with_tenant(User, ada, tenant_id)
    bob_user.suspend(as_ada, "audit")
    tenant_for_ada.step_down_admin(as_ada, bob)
    ada_user.suspend(as_bob, "coup")
    tenant_for_bob.step_down_admin(as_bob, ada)
    app._save(bob_user, tenant_for_ada)
    with pytest.raises(Conflict):  # ...but only the first to save does
        app._save(ada_user, tenant_for_bob)
    assert app._tenant(tenant_id).admins == {ada}
    assert app._load(User, ada, tenant_id).active

    with pytest.raises(LastAdmin):
        app.change_role(as_ada, ada, "member", "step back")
    app.reinstate_user(as_ada, bob, "cleared")
    app.change_role(as_ada, ada, "member", "step back")  # now Bob acts as admin: Ada may step back
    assert app._tenant(tenant_id).admins == {bob}
