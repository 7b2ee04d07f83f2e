"""Roles and API-key scopes, and which scopes each role may hold."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a user is in a tenant."""

    ADMIN = "admin"
    MEMBER = "member"
    BILLING = "billing"
    COMPLIANCE_OFFICER = "compliance_officer"
    AUDITOR = "auditor"


class Scope(StrEnum):
    """What an API key may be used for."""

    INFERENCE = "inference"
    ADMIN_READ = "admin:read"
    ADMIN_WRITE = "admin:write"
    AUDIT_READ = "audit:read"
    BILLING = "billing"


_SELF_SERVICE = {Scope.ADMIN_READ, Scope.ADMIN_WRITE}

SCOPES_BY_ROLE: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.MEMBER: frozenset({Scope.INFERENCE, *_SELF_SERVICE}),
    Role.BILLING: frozenset({Scope.BILLING, *_SELF_SERVICE}),
    Role.COMPLIANCE_OFFICER: frozenset({Scope.AUDIT_READ, *_SELF_SERVICE}),
    Role.AUDITOR: frozenset({Scope.AUDIT_READ, *_SELF_SERVICE}),
}
