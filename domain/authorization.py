"""Who may act on whose objects: the use-case rules on top of the permission matrix.

The matrix (``domain/permissions.py``) says which actions a role and a key's scopes allow. Some
objects belong to one user (API keys, usage); these rules say when a caller may act on, or read,
another user's. Commands apply the write rules themselves; the read side applies the read rules.
A refusal is a named domain error, mapped to HTTP in one place (``api/problems.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from domain.context import Caller
from domain.errors import NotFound, PermissionDenied
from domain.permissions import Action, allows, authorize
from domain.roles import Scope

# -- writes: API keys -----------------------------------------------------------------------


def may_act_on_key(role: str, scopes: frozenset[str], actor_user_id: UUID, owner_user_id: UUID) -> bool:
    """Issue a key for, or revoke a key of, ``owner_user_id``: one's own with KEYS_OWN, anyone's also
    with KEYS_MANAGE_ALL."""
    if not allows(role, scopes, Action.KEYS_OWN):
        return False
    return actor_user_id == owner_user_id or allows(role, scopes, Action.KEYS_MANAGE_ALL)


# What a key minted for someone else may hold. Every role may issue its own keys (admin:write is
# self-service), so nobody needs another user to mint them a management key; one minted by someone
# else would let its issuer act as its owner, even after the issuer was removed.
SCOPES_FOR_ANOTHER_USER = frozenset({Scope.INFERENCE.value})


def check_may_issue_key_for(caller: Caller, owner_user_id: UUID) -> None:
    """:class:`PermissionDenied` unless the caller may issue a key for ``owner_user_id``."""
    authorize(caller.role, caller.scopes, Action.KEYS_OWN)
    if not may_act_on_key(caller.role, caller.scopes, caller.user_id, owner_user_id):
        raise PermissionDenied("only admins may issue keys for another user")


def check_scopes_for_owner(caller: Caller, owner_user_id: UUID, scopes: Iterable[str]) -> None:
    """:class:`PermissionDenied` when a key for another user would hold more than ``inference``."""
    beyond = sorted(set(scopes) - SCOPES_FOR_ANOTHER_USER)
    if caller.user_id != owner_user_id and beyond:
        raise PermissionDenied(
            f"a key for another user may hold only the 'inference' scope, not {', '.join(beyond)}; "
            "they issue such keys for themselves"
        )


def check_may_revoke_key_of(caller: Caller, owner_user_id: UUID) -> None:
    """:class:`NotFound` unless the caller may revoke a key of ``owner_user_id``: to a caller who may
    not touch it, another user's key looks exactly like a missing one."""
    authorize(caller.role, caller.scopes, Action.KEYS_OWN)
    if not may_act_on_key(caller.role, caller.scopes, caller.user_id, owner_user_id):
        raise NotFound("apikey not found")


# -- reads: rows that belong to users --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PerUserRead:
    """A read of rows that belong to users: one's own with ``own``, the whole tenant's with ``tenant_wide``."""

    own: Action
    tenant_wide: Action
    refusal: str


KEY_LISTING = PerUserRead(
    Action.KEYS_READ_OWN,
    Action.KEYS_READ_ALL,
    "listing every user's keys needs an admin, compliance or auditor role",
)
USAGE = PerUserRead(Action.USAGE_OWN, Action.USAGE_TENANT, "tenant-wide usage needs the admin or billing role")


def may_read_tenant_wide(role: str, scopes: frozenset[str], read: PerUserRead) -> bool:
    """Whether a caller may read every user's rows of ``read``, not only their own."""
    return allows(role, scopes, read.own) and allows(role, scopes, read.tenant_wide)


def whose_rows(caller: Caller, read: PerUserRead, *, all_users: bool) -> UUID | None:
    """The user whose rows the caller reads: their own, or with ``all_users`` everyone's (None).

    :class:`PermissionDenied` when the caller may not read even their own, or asks for everyone's
    without being allowed to.
    """
    authorize(caller.role, caller.scopes, read.own)
    if not all_users:
        return caller.user_id
    if not may_read_tenant_wide(caller.role, caller.scopes, read):
        raise PermissionDenied(read.refusal)
    return None
