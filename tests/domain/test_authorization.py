"""Who may act on whose objects: every role, scope set and owner (own or another), against matrix and README."""

from __future__ import annotations

import re
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.services import Services
from domain.authorization import (
    KEY_LISTING,
    USAGE,
    PerUserRead,
    check_may_issue_key_for,
    check_may_revoke_key_of,
    may_act_on_key,
    may_read_tenant_wide,
    whose_rows,
)
from domain.context import SYSTEM, Caller, Ctx
from domain.errors import NotFound, PermissionDenied
from domain.permissions import MATRIX, Action, allows
from domain.roles import SCOPES_BY_ROLE, Role, Scope

roles = st.sampled_from([*Role, "owner"])  # "owner" is no role: nothing is allowed to it
scopes = st.frozensets(st.sampled_from([*Scope, "admin:*"]))


@st.composite
def callers_and_owners(draw: st.DrawFn) -> tuple[Caller, UUID, bool]:
    """A caller and the owner of the object they act on: themselves or someone else."""
    caller = Caller(draw(st.uuids()), draw(roles), draw(scopes))
    own = draw(st.booleans())
    return caller, caller.user_id if own else draw(st.uuids().filter(lambda u: u != caller.user_id)), own


def in_matrix(caller: Caller, action: Action) -> bool:
    """The matrix read directly: the key has the action's scope and the user one of its roles."""
    rule = MATRIX[action]
    return rule.scope in caller.scopes and caller.role in rule.roles


# -- writes: issue and revoke keys -----------------------------------------------------------


@given(callers_and_owners())
def test_keys_one_may_act_on_follow_the_matrix_and_the_readme(case: tuple[Caller, UUID, bool]) -> None:
    caller, owner, own = case
    allowed = may_act_on_key(caller.role, caller.scopes, caller.user_id, owner)
    needs = [Action.KEYS_OWN] if own else [Action.KEYS_OWN, Action.KEYS_MANAGE_ALL]
    assert allowed == all(in_matrix(caller, action) for action in needs)
    # README: "issue / revoke own keys": every role with admin:write; "anyone's keys": admin only.
    writes = Scope.ADMIN_WRITE in caller.scopes
    assert allowed == (writes and caller.role in set(Role) and (own or caller.role == Role.ADMIN))


@given(callers_and_owners())
def test_issuing_for_another_user_is_forbidden_and_revoking_theirs_is_not_found(
    case: tuple[Caller, UUID, bool],
) -> None:
    caller, owner, own = case
    if not allows(caller.role, caller.scopes, Action.KEYS_OWN):
        # Not even one's own keys: the matrix's own refusal, whoever the owner.
        for check in (check_may_issue_key_for, check_may_revoke_key_of):
            with pytest.raises(PermissionDenied, match=r"keys\.own"):
                check(caller, owner)
    elif may_act_on_key(caller.role, caller.scopes, caller.user_id, owner):
        check_may_issue_key_for(caller, owner)
        check_may_revoke_key_of(caller, owner)
    else:
        assert not own
        with pytest.raises(PermissionDenied, match=r"^only admins may issue keys for another user$"):
            check_may_issue_key_for(caller, owner)
        with pytest.raises(NotFound, match=r"^apikey not found$"):
            check_may_revoke_key_of(caller, owner)


# -- reads: everyone's keys, tenant-wide usage -----------------------------------------------


@given(roles, scopes)
def test_tenant_wide_reads_follow_the_matrix_and_the_readme(role: str, held: frozenset[str]) -> None:
    caller = Caller(uuid4(), role, held)
    reads = Scope.ADMIN_READ in held
    assert may_read_tenant_wide(role, held, KEY_LISTING) == (
        in_matrix(caller, Action.KEYS_READ_OWN) and in_matrix(caller, Action.KEYS_READ_ALL)
    )
    assert may_read_tenant_wide(role, held, USAGE) == (
        in_matrix(caller, Action.USAGE_OWN) and in_matrix(caller, Action.USAGE_TENANT)
    )
    # README: "all keys" for admin, compliance officer, auditor; "tenant-wide usage" for admin, billing.
    oversight = {Role.ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR}
    assert may_read_tenant_wide(role, held, KEY_LISTING) == (reads and role in oversight)
    assert may_read_tenant_wide(role, held, USAGE) == (reads and role in {Role.ADMIN, Role.BILLING})


@given(roles, scopes, st.booleans(), st.sampled_from([KEY_LISTING, USAGE]))
def test_whose_rows_a_caller_reads(role: str, held: frozenset[str], all_users: bool, read: PerUserRead) -> None:
    caller = Caller(uuid4(), role, held)
    if not allows(role, held, read.own):
        with pytest.raises(PermissionDenied, match=re.escape(read.own.value)):
            whose_rows(caller, read, all_users=all_users)
    elif not all_users:
        assert whose_rows(caller, read, all_users=False) == caller.user_id
    elif may_read_tenant_wide(role, held, read):
        assert whose_rows(caller, read, all_users=True) is None
    else:
        with pytest.raises(PermissionDenied) as refused:
            whose_rows(caller, read, all_users=True)
        assert str(refused.value) == read.refusal


# -- the commands apply the write rules themselves -------------------------------------------


def test_key_commands_apply_the_rules_for_a_caller_and_not_for_the_system(services: Services) -> None:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    tenant, ada = acme.tenant_id, acme.admin_user_id
    bob = app.accept_invite(
        token=app.invite_user(Ctx(SYSTEM, tenant, "r2"), email="bob@acme.example", role="member").secret,
        name="Bob",
        request_id="r3",
    ).user_id
    member = frozenset(SCOPES_BY_ROLE[Role.MEMBER])
    as_bob = Ctx(f"user:{bob}", tenant, "r4", Caller(bob, Role.MEMBER, member))
    as_ada = Ctx(f"user:{ada}", tenant, "r5", Caller(ada, Role.ADMIN, frozenset(SCOPES_BY_ROLE[Role.ADMIN])))
    events = app.recorder.max_notification_id()

    with pytest.raises(PermissionDenied, match="only admins may issue keys for another user"):
        app.issue_api_key(as_bob, user_id=ada, name="x", scopes=["inference"])
    with pytest.raises(NotFound, match="apikey not found"):
        app.revoke_api_key(as_bob, acme.admin_key.id, "mine now")
    assert app.recorder.max_notification_id() == events

    bobs = app.issue_api_key(as_bob, user_id=bob, name="laptop", scopes=sorted(member))
    for_bob = app.issue_api_key(as_ada, user_id=bob, name="ops", scopes=["inference"])
    app.revoke_api_key(as_ada, bobs.id, "rotated")
    app.revoke_api_key(as_bob, for_bob.id, "not needed")
    system = app.issue_api_key(Ctx(SYSTEM, tenant, "r6"), user_id=bob, name="cli", scopes=["inference"])
    app.revoke_api_key(Ctx(SYSTEM, tenant, "r7"), system.id, "")
