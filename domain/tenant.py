"""The tenant: an organisation with its own users, keys, agents and data.

The tenant's name may name a person (a sole trader's business): it is personal data, sealed like every
other value of the tenant's own (agent names, suspension reasons) under the tenant's subject id
(:func:`tenant_subject_id`, the tenant id itself: a deterministic uuid5 of the slug), whose key is
destroyed when a terminated tenant's data is erased; readers show ``<erased>`` from then on. Events
written before the name was sealed hold it as a plain string: they still load (``name`` is either),
and the read models redact it on the tenant's erasure, though those old stored bytes keep it.

The slug stays in clear, by decision: it is the tenant's identifier (its id derives from it; it is in
URLs, the CLI's ``--tenant`` and audit summaries) and must stay reserved after erasure so that no other
tenant can take over its id. Sign-up documents it as a public identifier, like a domain name, that should
not be a person's name; the display name is the place for that.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue, LastAdmin
from domain.ids import tenant_id_for
from domain.sealing import PersonalData
from policies.retention import is_jurisdiction

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38})[a-z0-9]$")
RESERVED_SLUGS = frozenset(
    {
        "api", "www", "admin", "administrator", "root", "system", "ownllm", "app", "apps", "auth",
        "login", "logout", "signup", "sso", "oidc", "static", "assets", "docs", "schema", "status",
        "health", "metrics", "billing", "support", "help", "security", "mail", "smtp", "v1", "v2",
        "agent", "agents", "nats", "operator", "audit", "legal", "terms", "privacy",
    }
)  # fmt: skip


def check_slug(slug: str) -> None:
    """A slug is lowercase ``[a-z0-9-]{3,40}``, not starting/ending with '-', and not reserved."""
    if not SLUG_PATTERN.fullmatch(slug):
        raise InvalidValue("slug must be 3-40 characters of a-z, 0-9 and '-', not starting or ending with '-'", "slug")
    if slug in RESERVED_SLUGS:
        raise InvalidValue(f"slug '{slug}' is reserved", "slug")


def check_jurisdiction(code: str) -> str:
    """An ISO 3166-1 alpha-2 code (upper-cased): whose law keeps the tenant's activity records."""
    cleaned = code.strip().upper()
    if not is_jurisdiction(cleaned):
        raise InvalidValue("jurisdiction must be an ISO 3166-1 alpha-2 country code such as NO or FR", "jurisdiction")
    return cleaned


def tenant_subject_id(tenant_id: UUID) -> UUID:
    """The data subject of the tenant's own sealed values (its name, agent names, reasons): the tenant id."""
    return tenant_id


def sealed_name(slug: str, name: str) -> PersonalData:
    """The tenant's display name as its ``Registered`` event carries it."""
    return PersonalData(tenant_subject_id(tenant_id_for(slug)), name)


class Tenant(Aggregate):
    """An organisation; its id derives from its slug so slugs are unique by construction."""

    jurisdiction = ""  # "" until its admin sets one: the operator's default applies (policies/retention.py)

    class Registered(Aggregate.Created):
        """``name`` is sealed (:func:`sealed_name`); a plain string in events stored before it was."""

        slug: str
        name: PersonalData | str
        admin_user_id: UUID
        actor: str
        request_id: str

    class Suspended(Aggregate.Event):
        """``reason_code``/``suspension_id``: the operator's action (empty/None before they existed)."""

        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed
        reason_code: str = ""
        suspension_id: UUID | None = None

    class Reinstated(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    class Terminated(Aggregate.Event):
        """The contract ended: access stops for good; its data is erased by ``erase_by`` (terms §11)."""

        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed
        terminated_at: datetime
        erase_by: datetime

    class AdminAppointed(Aggregate.Event):
        """A user now acts as an admin: joined or promoted as one, or reinstated while one."""

        tenant_id: UUID
        user_id: UUID
        actor: str
        request_id: str

    class AdminSteppedDown(Aggregate.Event):
        """A user no longer acts as an admin: demoted, suspended or removed."""

        tenant_id: UUID
        user_id: UUID
        actor: str
        request_id: str

    class JurisdictionSet(Aggregate.Event):
        """Whose law keeps the tenant's activity records (audit, usage): an ISO 3166-1 alpha-2 code."""

        tenant_id: UUID
        jurisdiction: str
        actor: str
        request_id: str

    @staticmethod
    def create_id(slug: str, **_: Any) -> UUID:
        """Tenant ids are the slug's deterministic uuid5."""
        return tenant_id_for(slug)

    @event(Registered)
    def __init__(self, slug: str, name: PersonalData | str, admin_user_id: UUID, actor: str, request_id: str) -> None:
        self.slug = slug
        self.name = name
        self.admin_user_id = admin_user_id
        self.admins = {admin_user_id}  # who acts as admin now: the invariant "never empty" lives here
        self.suspended = False
        self.suspension_id: UUID | None = None  # the operator's open action, when it stopped this
        self.terminated = False

    @property
    def display_name(self) -> str:
        """The name as readers show it: ``<erased>`` once the tenant's key is destroyed."""
        return str(self.name)

    @property
    def registered_at(self) -> datetime:
        """When the tenant signed up."""
        return self.created_on

    def suspend(self, ctx: Ctx, reason: str, reason_code: str = "", suspension_id: UUID | None = None) -> None:
        """Stop all access for the tenant."""
        self.check_active()
        self._suspended(
            tenant_id=self.id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.id, reason),
            reason_code=reason_code,
            suspension_id=suspension_id,
        )

    def reinstate(self, ctx: Ctx, reason: str) -> None:
        """Restore access after a suspension."""
        if not self.suspended:
            raise InvalidState("tenant is not suspended")
        if self.terminated:
            raise InvalidState("tenant is terminated")
        self._reinstated(
            tenant_id=self.id, actor=ctx.actor, request_id=ctx.request_id, reason=PersonalData(self.id, reason)
        )

    def terminate(self, ctx: Ctx, reason: str, now: datetime, erase_by: datetime) -> None:
        """End the contract: no access from now on, erasure of its data due by ``erase_by``."""
        if self.terminated:
            raise InvalidState("tenant is already terminated")
        self._terminated(tenant_id=self.id, actor=ctx.actor, request_id=ctx.request_id,
                         reason=PersonalData(self.id, reason), terminated_at=now, erase_by=erase_by)  # fmt: skip

    def set_jurisdiction(self, ctx: Ctx, jurisdiction: str) -> bool:
        """Set the tenant's jurisdiction (no event when it is already the one)."""
        code = check_jurisdiction(jurisdiction)
        if self.terminated:
            raise InvalidState("tenant is terminated")
        if code == self.jurisdiction:
            return False
        self._jurisdiction_set(tenant_id=self.id, jurisdiction=code, actor=ctx.actor, request_id=ctx.request_id)
        return True

    def appoint_admin(self, ctx: Ctx, user_id: UUID) -> None:
        """Count a user among the acting admins (no event when already counted)."""
        if user_id not in self.admins:
            self._admin_appointed(tenant_id=self.id, user_id=user_id, actor=ctx.actor, request_id=ctx.request_id)

    def step_down_admin(self, ctx: Ctx, user_id: UUID) -> None:
        """Stop counting a user among the acting admins; the last one may not step down."""
        if user_id not in self.admins:
            return
        self.check_not_last_admin(user_id)
        self._admin_stepped_down(tenant_id=self.id, user_id=user_id, actor=ctx.actor, request_id=ctx.request_id)

    def check_not_last_admin(self, user_id: UUID) -> None:
        """Refuse to leave the tenant without an acting admin."""
        if self.admins <= {user_id}:
            raise LastAdmin("the tenant must keep at least one active admin")

    def check_active(self) -> None:
        """Refuse commands on a suspended tenant."""
        if self.suspended:
            raise InvalidState("tenant is suspended")

    @event(Suspended)
    def _suspended(
        self,
        tenant_id: UUID,
        actor: str,
        request_id: str,
        reason: PersonalData,
        reason_code: str = "",
        suspension_id: UUID | None = None,
    ) -> None:
        self.suspended = True
        self.suspension_id = suspension_id

    @event(Reinstated)
    def _reinstated(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.suspended = False

    @event(Terminated)
    def _terminated(
        self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData, terminated_at: datetime,
        erase_by: datetime,
    ) -> None:  # fmt: skip
        self.terminated = True
        self.suspended = True  # every check of an active tenant refuses a terminated one too

    @event(AdminAppointed)
    def _admin_appointed(self, tenant_id: UUID, user_id: UUID, actor: str, request_id: str) -> None:
        self.admins.add(user_id)

    @event(AdminSteppedDown)
    def _admin_stepped_down(self, tenant_id: UUID, user_id: UUID, actor: str, request_id: str) -> None:
        self.admins.discard(user_id)

    @event(JurisdictionSet)
    def _jurisdiction_set(self, tenant_id: UUID, jurisdiction: str, actor: str, request_id: str) -> None:
        self.jurisdiction = jurisdiction
