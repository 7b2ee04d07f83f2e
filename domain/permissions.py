"""The permission matrix: for each action, the key scope it needs and the roles allowed. One place."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.errors import PermissionDenied
from domain.roles import Role, Scope


class Action(StrEnum):
    """Everything a caller can ask of the management API."""

    TENANT_READ = "tenant.read"
    TENANT_MANAGE = "tenant.manage"  # the tenant's settings (its jurisdiction)
    USERS_READ = "users.read"
    USERS_INVITE = "users.invite"
    USERS_MANAGE = "users.manage"  # change role, suspend, reinstate, remove
    KEYS_READ_OWN = "keys.read_own"
    KEYS_OWN = "keys.own"  # issue and revoke one's own keys
    KEYS_READ_ALL = "keys.read_all"
    KEYS_MANAGE_ALL = "keys.manage_all"  # issue for / revoke another user's keys
    AGENTS_READ = "agents.read"
    AGENTS_MANAGE = "agents.manage"  # pairing keys, revoke agents
    USAGE_OWN = "usage.own"
    USAGE_TENANT = "usage.tenant"
    INFERENCE = "inference"
    AUDIT_READ = "audit.read"  # search, export and replay the audit trail
    LICENCES_MANAGE = "licences.manage"  # accept and withdraw model licences for the tenant
    FEATURES_MANAGE = "features.manage"  # turn opt-in (beta) features on and off for the tenant
    TERMS_ANSWER = "terms.answer"  # accept or reject a version of the terms for the tenant
    APPEALS_READ = "appeals.read"  # the tenant's suspensions and appeals
    APPEALS_FILE = "appeals.file"  # appeal an operator's suspension
    DATA_OWN = "data.own"  # request or cancel one's own deletion, export one's own data
    DATA_READ_OWN = "data.read_own"  # follow and download an export one may read
    DATA_EXPORT = "data.export"  # export the whole tenant
    BILLING_READ = "billing.read"  # billing account, subscription, invoices, CSV export
    BILLING_MANAGE = "billing.manage"  # billing details, subscribe, change or cancel the plan
    CREDITS_READ = "credits.read"  # prepaid-credit balance, lots and movements (and their CSV export)


@dataclass(frozen=True, slots=True)
class Rule:
    """An action needs this scope on the key and one of these roles on the user."""

    scope: Scope
    roles: frozenset[Role]


_ALL = frozenset(Role)
_ADMIN = frozenset({Role.ADMIN})
_OVERSIGHT = frozenset({Role.ADMIN, Role.COMPLIANCE_OFFICER, Role.AUDITOR})

MATRIX: dict[Action, Rule] = {
    Action.TENANT_READ: Rule(Scope.ADMIN_READ, _ALL),
    Action.TENANT_MANAGE: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.USERS_READ: Rule(Scope.ADMIN_READ, _OVERSIGHT),
    Action.USERS_INVITE: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.USERS_MANAGE: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.KEYS_READ_OWN: Rule(Scope.ADMIN_READ, _ALL),
    Action.KEYS_OWN: Rule(Scope.ADMIN_WRITE, _ALL),
    Action.KEYS_READ_ALL: Rule(Scope.ADMIN_READ, _OVERSIGHT),
    Action.KEYS_MANAGE_ALL: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.AGENTS_READ: Rule(Scope.ADMIN_READ, _OVERSIGHT),
    Action.AGENTS_MANAGE: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.USAGE_OWN: Rule(Scope.ADMIN_READ, _ALL),
    Action.USAGE_TENANT: Rule(Scope.ADMIN_READ, frozenset({Role.ADMIN, Role.BILLING})),
    Action.INFERENCE: Rule(Scope.INFERENCE, frozenset({Role.ADMIN, Role.MEMBER})),
    Action.AUDIT_READ: Rule(Scope.AUDIT_READ, _OVERSIGHT),
    Action.LICENCES_MANAGE: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.FEATURES_MANAGE: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.TERMS_ANSWER: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.APPEALS_READ: Rule(Scope.ADMIN_READ, _ADMIN),
    Action.APPEALS_FILE: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.DATA_OWN: Rule(Scope.ADMIN_WRITE, _ALL),
    Action.DATA_READ_OWN: Rule(Scope.ADMIN_READ, _ALL),
    Action.DATA_EXPORT: Rule(Scope.ADMIN_WRITE, _ADMIN),
    Action.BILLING_READ: Rule(Scope.BILLING, frozenset({Role.ADMIN, Role.BILLING})),
    Action.BILLING_MANAGE: Rule(Scope.BILLING, frozenset({Role.ADMIN, Role.BILLING})),
    Action.CREDITS_READ: Rule(Scope.BILLING, frozenset({Role.ADMIN, Role.BILLING})),
}


def allows(role: str, scopes: frozenset[str], action: Action) -> bool:
    """True when a key with ``scopes`` held by a user with ``role`` may perform ``action``."""
    rule = MATRIX[action]
    return rule.scope in scopes and role in rule.roles


def authorize(role: str, scopes: frozenset[str], action: Action) -> None:
    """Raise :class:`PermissionDenied` naming what is missing."""
    rule = MATRIX[action]
    if role not in rule.roles:
        raise PermissionDenied(f"role '{role}' may not {action.value}")
    if rule.scope not in scopes:
        raise PermissionDenied(f"{action.value} needs an API key with scope '{rule.scope.value}'")
