"""The OwnLLM application: every command loads aggregates, calls one method each, saves atomically."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar
from uuid import UUID, uuid4

import bcrypt
from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Mapper

from domain import secrets
from domain.agent import Agent
from domain.api_key import ApiKey, check_scopes
from domain.context import Ctx
from domain.errors import (
    AlreadyMember,
    AlreadyUsed,
    Conflict,
    InvalidState,
    InvalidValue,
    NotFound,
    SlugTaken,
)
from domain.ids import secret_id_for
from domain.invite import Invite
from domain.pairing_key import PairingKey
from domain.roles import SCOPES_BY_ROLE, Role
from domain.sealing import KeyStore, PersonalData, SealingMapper
from domain.tenant import Tenant, check_slug
from domain.usage import USAGE_STATUSES, UsageRecord
from domain.user import User, check_role

EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_NAME = 200
TAggregate = TypeVar("TAggregate", bound=Aggregate)


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


class Directory(Protocol):
    """What commands need to know across aggregates; implemented by the directory projection."""

    def email_taken(self, tenant_id: UUID, email: str, now: datetime) -> bool:
        """A current (not removed) user or open invite of the tenant has this email."""
        ...


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A freshly issued bearer secret: ``secret`` is shown once and never stored."""

    id: UUID
    secret: str
    prefix: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class SignedUp:
    """The outcome of a signup."""

    tenant_id: UUID
    admin_user_id: UUID
    admin_key: IssuedSecret


@dataclass(frozen=True, slots=True)
class Joined:
    """The outcome of accepting an invite."""

    tenant_id: UUID
    user_id: UUID
    role: str
    api_key: IssuedSecret


@dataclass(frozen=True, slots=True)
class PairedAgent:
    """Credentials handed to an agent once, at pairing."""

    agent_id: UUID
    tenant_id: UUID
    nats_user: str
    nats_password: str


def normalise_email(email: str) -> str:
    """Trimmed, lower-cased and plausibly shaped, or :class:`InvalidValue`."""
    cleaned = email.strip().lower()
    if len(cleaned) > 254 or not EMAIL_PATTERN.fullmatch(cleaned):
        raise InvalidValue("email is not a valid address", "email")
    return cleaned


def check_name(value: str, field: str) -> str:
    """A non-empty display name of bounded length."""
    cleaned = value.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise InvalidValue(f"{field} must be 1-{MAX_NAME} characters", field)
    return cleaned


def check_reason(reason: str) -> str:
    """Reasons are free text of bounded length."""
    if len(reason) > 1000:
        raise InvalidValue("reason must be at most 1000 characters", "reason")
    return reason


class OwnLLM(Application[UUID]):
    """Commands of the core: tenants, users, invites, API keys, pairing keys, agents, usage."""

    name = "ownllm"

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        keys: KeyStore,
        pepper: bytes,
        directory: Directory | None = None,
        clock: Callable[[], datetime] = utc_now,
        invite_ttl: timedelta = timedelta(days=7),
        pairing_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.keys = keys
        self.pepper = pepper
        self.directory = directory
        self.clock = clock
        self.invite_ttl = invite_ttl
        self.pairing_ttl = pairing_ttl
        super().__init__(dict(env))

    def construct_mapper(self) -> Mapper[UUID]:
        """eventsourcing's mapper plus per-subject sealing of personal data."""
        return SealingMapper(self.construct_transcoder(), self.keys)

    # -- tenants ---------------------------------------------------------------------------

    def signup(self, *, slug: str, name: str, admin_name: str, admin_email: str, request_id: str) -> SignedUp:
        """Register a tenant with its first admin, who gets an admin API key."""
        check_slug(slug)
        org_name = check_name(name, "name")
        admin_id = uuid4()
        actor = f"user:{admin_id}"
        tenant = Tenant(slug=slug, name=org_name, admin_user_id=admin_id, actor=actor, request_id=request_id)
        admin = User(
            id=admin_id,
            tenant_id=tenant.id,
            name=PersonalData(admin_id, check_name(admin_name, "admin_name")),
            email=PersonalData(admin_id, normalise_email(admin_email)),
            role=Role.ADMIN.value,
            invite_id=None,
            actor=actor,
            request_id=request_id,
        )
        ctx = Ctx(actor=actor, tenant_id=tenant.id, request_id=request_id)
        key, issued = self._new_api_key(ctx, admin, "signup admin key", list(SCOPES_BY_ROLE[Role.ADMIN]), None)
        self._save(tenant, admin, key, conflict=SlugTaken(f"slug '{slug}' is taken"))
        return SignedUp(tenant_id=tenant.id, admin_user_id=admin_id, admin_key=issued)

    def suspend_tenant(self, ctx: Ctx, reason: str) -> None:
        """Operator action: stop all access for the tenant."""
        tenant = self._tenant(ctx.tenant_id)
        tenant.suspend(ctx, check_reason(reason))
        self._save(tenant)

    def reinstate_tenant(self, ctx: Ctx, reason: str) -> None:
        """Operator action: restore access."""
        tenant = self._tenant(ctx.tenant_id)
        tenant.reinstate(ctx, check_reason(reason))
        self._save(tenant)

    # -- users and invites ------------------------------------------------------------------

    def invite_user(self, ctx: Ctx, *, email: str, role: str) -> IssuedSecret:
        """Invite an email with a role; the token is shown once and expires."""
        self._tenant(ctx.tenant_id).check_active()
        address = normalise_email(email)
        role_value = check_role(role).value
        if self.directory is not None and self.directory.email_taken(ctx.tenant_id, address, self.clock()):
            raise AlreadyMember("this email already has a user or an open invite in the tenant")
        token = secrets.new_secret(secrets.INVITE_PREFIX)
        token_hash = secrets.keyed_hash(self.pepper, token)
        user_id = uuid4()
        expires_at = self.clock() + self.invite_ttl
        invite = Invite(
            tenant_id=ctx.tenant_id,
            user_id=user_id,
            email=PersonalData(user_id, address),
            role=role_value,
            token_hash=token_hash,
            expires_at=expires_at,
            actor=ctx.actor,
            request_id=ctx.request_id,
        )
        self._save(invite, conflict=Conflict("token collision; retry"))
        return IssuedSecret(invite.id, token, secrets.visible_prefix(token), expires_at)

    def revoke_invite(self, ctx: Ctx, invite_id: UUID, reason: str) -> None:
        """Withdraw an open invite."""
        invite = self._load(Invite, invite_id, ctx.tenant_id)
        invite.revoke(ctx, check_reason(reason))
        self._save(invite)

    def accept_invite(self, *, token: str, name: str, request_id: str) -> Joined:
        """Create the invited user; they get a first API key with their role's scopes."""
        invite = self._by_secret(Invite, token, "invite")
        tenant = self._tenant(invite.tenant_id)
        tenant.check_active()
        actor = f"user:{invite.user_id}"
        ctx = Ctx(actor=actor, tenant_id=invite.tenant_id, request_id=request_id)
        invite.accept(ctx, self.clock())
        user = User(
            id=invite.user_id,
            tenant_id=invite.tenant_id,
            name=PersonalData(invite.user_id, check_name(name, "name")),
            email=invite.email,
            role=invite.role,
            invite_id=invite.id,
            actor=actor,
            request_id=request_id,
        )
        key, issued = self._new_api_key(ctx, user, "first key", list(SCOPES_BY_ROLE[Role(invite.role)]), None)
        if user.role == Role.ADMIN:
            tenant.appoint_admin(ctx, user.id)
        self._save(invite, user, key, tenant, conflict=AlreadyUsed("invite was already accepted"))
        return Joined(tenant_id=invite.tenant_id, user_id=user.id, role=user.role, api_key=issued)

    def change_role(self, ctx: Ctx, user_id: UUID, role: str, reason: str) -> None:
        """Give a user another role; the tenant keeps at least one active admin."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        user.change_role(ctx, role, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def suspend_user(self, ctx: Ctx, user_id: UUID, reason: str) -> None:
        """Stop a user's access (their keys are refused) until reinstated."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        user.suspend(ctx, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def reinstate_user(self, ctx: Ctx, user_id: UUID, reason: str) -> None:
        """Restore a suspended user."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        user.reinstate(ctx, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def remove_user(self, ctx: Ctx, user_id: UUID, reason: str) -> None:
        """Remove a user; every key of theirs stops working on the next request."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        user.remove(ctx, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def _count_admin(self, ctx: Ctx, tenant: Tenant, user: User) -> None:
        """Keep the tenant's acting admins in step with the user, and save both at once.

        Saving the tenant too (when its admins change) makes two concurrent demotions of the last
        two admins conflict on the tenant's version: one of them gets 409, never both through.
        """
        if user.active and user.role == Role.ADMIN:
            tenant.appoint_admin(ctx, user.id)
        else:
            tenant.step_down_admin(ctx, user.id)
        self._save(user, tenant)

    # -- API keys ---------------------------------------------------------------------------

    def issue_api_key(
        self,
        ctx: Ctx,
        *,
        user_id: UUID,
        name: str,
        scopes: list[str],
        expires_at: datetime | None = None,
    ) -> IssuedSecret:
        """Issue a personal key for an active user; the secret is returned once."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        tenant.check_active()
        if not user.active:
            raise InvalidState("keys can only be issued to active users")
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidValue("expires_at needs a timezone", "expires_at")
        if expires_at is not None and expires_at <= self.clock():
            raise InvalidValue("expires_at must be in the future", "expires_at")
        key, issued = self._new_api_key(ctx, user, name, scopes, expires_at)
        self._save(key, conflict=Conflict("key collision; retry"))
        return issued

    def revoke_api_key(self, ctx: Ctx, key_id: UUID, reason: str) -> None:
        """Revoke a key; it is refused from the next request on."""
        key = self._load(ApiKey, key_id, ctx.tenant_id)
        key.revoke(ctx, check_reason(reason))
        self._save(key)

    def _new_api_key(
        self, ctx: Ctx, user: User, name: str, scopes: list[str], expires_at: datetime | None
    ) -> tuple[ApiKey, IssuedSecret]:
        secret = secrets.new_secret(secrets.API_KEY_PREFIX)
        key = ApiKey(
            tenant_id=user.tenant_id,
            user_id=user.id,
            name=PersonalData(user.id, check_name(name, "name")),
            prefix=secrets.visible_prefix(secret),
            secret_hash=secrets.keyed_hash(self.pepper, secret),
            scopes=check_scopes(scopes, user.role),
            expires_at=expires_at,
            actor=ctx.actor,
            request_id=ctx.request_id,
        )
        return key, IssuedSecret(key.id, secret, secrets.visible_prefix(secret), expires_at)

    # -- pairing and agents -----------------------------------------------------------------

    def issue_pairing_key(self, ctx: Ctx) -> IssuedSecret:
        """A one-time key for pairing one agent, valid for ``pairing_ttl``."""
        self._tenant(ctx.tenant_id).check_active()
        secret = secrets.new_secret(secrets.PAIRING_PREFIX)
        expires_at = self.clock() + self.pairing_ttl
        key = PairingKey(
            tenant_id=ctx.tenant_id,
            prefix=secrets.visible_prefix(secret),
            secret_hash=secrets.keyed_hash(self.pepper, secret),
            expires_at=expires_at,
            actor=ctx.actor,
            request_id=ctx.request_id,
        )
        self._save(key, conflict=Conflict("key collision; retry"))
        return IssuedSecret(key.id, secret, secrets.visible_prefix(secret), expires_at)

    def revoke_pairing_key(self, ctx: Ctx, pairing_key_id: UUID, reason: str) -> None:
        """Withdraw an unused pairing key."""
        key = self._load(PairingKey, pairing_key_id, ctx.tenant_id)
        key.revoke(ctx, check_reason(reason))
        self._save(key)

    def redeem_pairing_key(self, *, secret: str, name: str, request_id: str) -> PairedAgent:
        """Pair an agent: the key is used up and the agent gets NATS credentials, once."""
        key = self._by_secret(PairingKey, secret, "pairing key")
        self._tenant(key.tenant_id).check_active()
        agent_id = uuid4()
        ctx = Ctx(actor=f"agent:{agent_id}", tenant_id=key.tenant_id, request_id=request_id)
        key.redeem(ctx, agent_id, self.clock())
        password = secrets.new_secret("")
        nats_user = f"agent-{agent_id}"
        agent = Agent(
            id=agent_id,
            tenant_id=key.tenant_id,
            pairing_key_id=key.id,
            name=PersonalData(key.tenant_id, check_name(name, "name")),
            nats_user=nats_user,
            nats_password_bcrypt=bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b"2a")).decode(),
            actor=ctx.actor,
            request_id=request_id,
        )
        self._save(key, agent, conflict=AlreadyUsed("pairing key was already redeemed"))
        return PairedAgent(agent_id=agent_id, tenant_id=key.tenant_id, nats_user=nats_user, nats_password=password)

    def revoke_agent(self, ctx: Ctx, agent_id: UUID, reason: str) -> None:
        """Revoke an agent's credentials."""
        agent = self._load(Agent, agent_id, ctx.tenant_id)
        agent.revoke(ctx, check_reason(reason))
        self._save(agent)

    # -- usage ------------------------------------------------------------------------------

    def record_usage(
        self,
        *,
        tenant_id: UUID,
        user_id: UUID,
        key_id: UUID,
        agent_id: UUID | str | None,
        model: str,
        endpoint: str,
        stream: bool,
        status: str,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_ms: int | None,
        duration_ms: int,
        request_id: str,
    ) -> UUID:
        """Record how one inference request ended (counts only); idempotent per request id."""
        if status not in USAGE_STATUSES:
            raise InvalidValue(f"unknown usage status {status!r}", "status")
        record = UsageRecord(
            id=uuid_for_request(request_id),
            tenant_id=tenant_id,
            user_id=user_id,
            key_id=key_id,
            agent_id=UUID(str(agent_id)) if agent_id else None,
            model=model,
            endpoint=endpoint,
            stream=stream,
            status=status,
            prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion_tokens),
            ttft_ms=None if ttft_ms is None else int(ttft_ms),
            duration_ms=int(duration_ms),
            actor=f"key:{key_id}",
            request_id=request_id,
        )
        with contextlib.suppress(IntegrityError):  # already recorded for this request id: exactly one
            self.save(record)
        return record.id

    # -- loading ----------------------------------------------------------------------------

    def _tenant(self, tenant_id: UUID) -> Tenant:
        return _checked_tenant(self._get(tenant_id))

    def _load(self, cls: type[TAggregate], aggregate_id: UUID, tenant_id: UUID) -> TAggregate:
        """Load an aggregate of the caller's tenant; anything else is simply not found."""
        return _checked(cls, self._get(aggregate_id), tenant_id)

    def _load_with_tenant(
        self, cls: type[TAggregate], aggregate_id: UUID, tenant_id: UUID
    ) -> tuple[Tenant, TAggregate]:
        """The tenant and one of its aggregates, read together (one round trip where the recorder can)."""
        streams = self._streams([tenant_id, aggregate_id])
        tenant = _checked_tenant(project_aggregate(None, streams[tenant_id]))
        return tenant, _checked(cls, project_aggregate(None, streams[aggregate_id]), tenant_id)

    def _get(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate

    def _streams(self, ids: list[UUID]) -> dict[UUID, list[DomainEventProtocol[UUID]]]:
        """Each aggregate's events: one query where the recorder reads several streams at once, else one each."""
        ids = list(dict.fromkeys(ids))  # one stream per aggregate, even when two roles name the same id
        select_many = getattr(self.recorder, "select_events_of", None)
        if select_many is not None:
            stored = select_many(ids)
        else:
            stored = [event for i in ids for event in self.recorder.select_events(i)]
        streams: dict[UUID, list[DomainEventProtocol[UUID]]] = {i: [] for i in ids}
        for event in stored:
            streams[event.originator_id].append(self.mapper.to_domain_event(event))
        return streams

    def _by_secret(self, cls: type[TAggregate], secret: str, kind: str) -> TAggregate:
        """The one-time-secret aggregate (invite, pairing key) a secret names; its id is derived from it."""
        aggregate = self._get(cls.create_id(secrets.keyed_hash(self.pepper, secret)))
        if not isinstance(aggregate, cls):
            raise NotFound(f"unknown {kind}")
        return aggregate

    def _save(self, *aggregates: Aggregate, conflict: Exception | None = None) -> None:
        """Save atomically; a version conflict (a duplicate natural key, or two requests changing the
        same aggregate at once) becomes ``conflict``, never a bare IntegrityError (an HTTP 500)."""
        try:
            self.save(*aggregates)
        except IntegrityError:
            raise conflict or Conflict("it was changed by another request at the same time; retry") from None


def _checked_tenant(aggregate: object) -> Tenant:
    """The aggregate if it is a tenant; anything else is "tenant not found"."""
    if not isinstance(aggregate, Tenant):
        raise NotFound("tenant not found")
    return aggregate


def _checked(cls: type[TAggregate], aggregate: object, tenant_id: UUID) -> TAggregate:
    """The aggregate if it is a ``cls`` of the tenant; another tenant's looks exactly like a missing one."""
    if not isinstance(aggregate, cls) or getattr(aggregate, "tenant_id", None) != tenant_id:
        raise NotFound(f"{cls.__name__.lower()} not found")
    return aggregate


def uuid_for_request(request_id: str) -> UUID:
    """The usage record id of a request."""
    return secret_id_for("usage", request_id)
