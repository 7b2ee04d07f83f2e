"""Request and response bodies of the management API (msgspec structs, not domain events)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta

Slug = Annotated[str, Meta(min_length=3, max_length=40, description=(
    "lowercase [a-z0-9-]{3,40}; a public identifier kept in clear after erasure (in URLs and the audit "
    "trail), so not a person's name: put that in name, which is sealed and erased"))]  # fmt: skip
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(min_length=3, max_length=254)]
Reason = Annotated[str, Meta(max_length=1000)]
Secret = Annotated[str, Meta(min_length=1, max_length=200)]
RoleName = Annotated[str, Meta(max_length=40, description="admin, member, billing, compliance_officer, auditor")]
ScopeName = Annotated[str, Meta(max_length=40)]
AwareDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a timezone, e.g. 2027-01-31T00:00:00Z")]


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """Base of request bodies: unknown fields are refused."""


TermsRef = Annotated[str, Meta(min_length=1, max_length=40, description="The terms accepted: terms-N")]


class SignupRequest(Body):
    slug: Slug
    name: Name
    admin_name: Name
    admin_email: Email
    accept_terms: TermsRef  # explicit acceptance of the terms in force, by version (terms §18)


class InviteRequest(Body):
    email: Email
    role: RoleName = "member"


class AcceptInviteRequest(Body):
    token: Secret
    name: Name


class RoleChangeRequest(Body):
    role: RoleName
    reason: Reason = ""


class ReasonRequest(Body):
    reason: Reason = ""


class IssueKeyRequest(Body):
    name: Name
    scopes: Annotated[list[ScopeName], Meta(min_length=1, max_length=5)]
    expires_at: AwareDatetime | None = None
    user_id: UUID | None = None  # admins may issue for another user of the tenant


class PairRequest(Body):
    pairing_key: Secret
    name: Name = "agent"


class IssuedSecretOut(msgspec.Struct):
    """A secret shown exactly once."""

    id: UUID
    secret: str
    prefix: str
    expires_at: datetime | None


class TenantOut(msgspec.Struct):
    id: UUID
    slug: str
    name: str
    status: str
    registered_at: datetime
    # Whose law keeps the tenant's activity records (audit, usage; ISO 3166-1 alpha-2); billing records
    # follow the operator's. ``jurisdiction_default``: none was set, the operator's default applies.
    jurisdiction: str = ""
    jurisdiction_default: bool = True


class JurisdictionIn(msgspec.Struct, forbid_unknown_fields=True):
    """Whose law keeps the tenant's activity records: an ISO 3166-1 alpha-2 code such as NO or FR."""

    jurisdiction: Annotated[str, msgspec.Meta(max_length=8)]


class UserOut(msgspec.Struct):
    id: UUID
    name: str
    email: str
    role: str
    status: str
    joined_at: datetime


class SignupResponse(msgspec.Struct):
    tenant: TenantOut
    admin: UserOut
    api_key: IssuedSecretOut


class InviteOut(msgspec.Struct):
    id: UUID
    email: str
    role: str
    status: str
    expires_at: datetime
    issued_at: datetime


class IssuedInviteOut(msgspec.Struct):
    id: UUID
    token: str
    expires_at: datetime


class JoinedOut(msgspec.Struct):
    tenant_id: UUID
    user_id: UUID
    role: str
    api_key: IssuedSecretOut


class KeyOut(msgspec.Struct):
    id: UUID
    user_id: UUID
    name: str
    prefix: str
    scopes: list[str]
    status: str
    expires_at: datetime | None
    issued_at: datetime
    revoked_at: datetime | None
    issued_by: UUID | None = None  # who minted it; null: the operator, signup or joining, or an older key
    sharing_suspected_at: datetime | None = None  # when the key-sharing detector last reported it


class IssuedKeyOut(msgspec.Struct):
    id: UUID
    user_id: UUID
    secret: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None


class PairingKeyOut(msgspec.Struct):
    id: UUID
    prefix: str
    status: str
    expires_at: datetime
    issued_at: datetime
    agent_id: UUID | None


class AgentOut(msgspec.Struct):
    id: UUID
    name: str
    status: str
    paired_at: datetime
    revoked_at: datetime | None


class PairedOut(msgspec.Struct):
    agent_id: UUID
    tenant_id: UUID
    nats_url: str
    nats_user: str
    nats_password: str


class UsageRowOut(msgspec.Struct):
    day: date
    model: str
    user_id: UUID
    key_id: UUID
    requests: int
    prompt_tokens: int
    completion_tokens: int
    duration_ms: int
    by_status: dict[str, int]


class MeOut(msgspec.Struct):
    user: UserOut
    tenant: TenantOut
    key_id: UUID
    scopes: list[str]


class AuditRowOut(msgspec.Struct):
    """One audit row; names are as of now (``<erased>`` once the subject is erased)."""

    position: int  # notification position: the keyset cursor, and the event's place in the ledger
    time: datetime
    actor: str  # user:<id>, key:<id>, agent:<id> or system
    actor_name: str
    action: str  # stable dotted name, e.g. api_key.revoked
    subject_kind: str
    subject_id: UUID
    subject_name: str | None
    summary: str
    request_id: str


class ReplayOut(msgspec.Struct):
    """A tenant's users, roles, keys and agents as they stood at ``as_of``, rebuilt from events only."""

    as_of: datetime
    position: int  # the last event of the tenant at or before as_of
    head: int  # the log's head when replayed
    tenant: TenantOut | None
    users: list[UserOut]
    keys: list[KeyOut]
    agents: list[AgentOut]
