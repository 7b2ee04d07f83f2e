"""Access: personal API keys, one-time pairing keys, and the agents they pair."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from domain import secrets
from domain.agent import Agent
from domain.api_key import ApiKey, check_scopes
from domain.authorization import check_may_issue_key_for, check_may_revoke_key_of, check_scopes_for_owner
from domain.commands.base import Commands, check_name, check_reason
from domain.context import Ctx
from domain.errors import AgentLimitReached, AlreadyUsed, Conflict, InvalidState, InvalidValue
from domain.pairing_key import PairingKey
from domain.sealing import PersonalData
from domain.user import User
from policies.limits import DEFAULT_PLAN, max_agents_for


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A freshly issued bearer secret: ``secret`` is shown once and never stored."""

    id: UUID
    secret: str
    prefix: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class PairedAgent:
    """Credentials handed to an agent once, at pairing."""

    agent_id: UUID
    tenant_id: UUID
    nats_user: str
    nats_password: str


class AccessCommands(Commands):
    """Secrets that grant access: each is shown once, stored only as a keyed hash, and revocable."""

    default_plan: str = DEFAULT_PLAN  # the plan of a tenant without one (the API sets the operator's choice)

    # -- API keys ----------------------------------------------------------------------------

    def issue_api_key(
        self,
        ctx: Ctx,
        *,
        user_id: UUID,
        name: str,
        scopes: list[str],
        expires_at: datetime | None = None,
    ) -> IssuedSecret:
        """Issue a personal key for an active user; the secret is returned once.

        A caller who is not an admin may issue keys only for themselves; an admin's key for another
        user is inference-only and records the admin as its issuer.
        """
        if ctx.caller is not None:
            check_may_issue_key_for(ctx.caller, user_id)
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        tenant.check_active()
        if not user.active:
            raise InvalidState("keys can only be issued to active users")
        if ctx.caller is not None:  # after the load: another tenant's user stays "not found"
            check_scopes_for_owner(ctx.caller, user_id, scopes)
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidValue("expires_at needs a timezone", "expires_at")
        if expires_at is not None and expires_at <= self.clock():
            raise InvalidValue("expires_at must be in the future", "expires_at")
        key, issued = self._new_api_key(ctx, user, name, scopes, expires_at)
        self._save(key, conflict=Conflict("key collision; retry"))
        return issued

    def revoke_api_key(self, ctx: Ctx, key_id: UUID, reason: str) -> None:
        """Revoke a key; it is refused from the next request on.

        A caller who is not an admin may revoke only their own keys; another user's is not found.
        """
        key = self._load(ApiKey, key_id, ctx.tenant_id)
        if ctx.caller is not None:
            check_may_revoke_key_of(ctx.caller, key.user_id)
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
            issued_by=ctx.caller.user_id if ctx.caller is not None else None,
        )
        return key, IssuedSecret(key.id, secret, secrets.visible_prefix(secret), expires_at)

    # -- pairing and agents ------------------------------------------------------------------

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
        self._check_agent_room(key.tenant_id)
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
            nats_password_bcrypt=self.hash_credential(password),
            actor=ctx.actor,
            request_id=request_id,
        )
        self._save(key, agent, conflict=AlreadyUsed("pairing key was already redeemed"))
        return PairedAgent(agent_id=agent_id, tenant_id=key.tenant_id, nats_user=nats_user, nats_password=password)

    def _check_agent_room(self, tenant_id: UUID) -> None:
        """Refuse pairing beyond the plan's cap on active agents.

        Counted from the directory, which this process brings up to date after every command; two
        pairings racing (or in two API processes) may each see room for one more, so a tenant can
        exceed the cap by the pairings in flight at once: bounded, and visible in its agent list.
        """
        if self.directory is None:
            return
        row = self.directory.tenants.get(tenant_id)
        plan = (row.plan if row is not None else "") or self.default_plan
        cap = max_agents_for(plan)
        active = sum(1 for agent in self.directory.tenant_agents(tenant_id) if agent.revoked_at is None)
        if active >= cap:
            raise AgentLimitReached(
                f"the tenant already has {active} active agents, the most its plan ({plan}) allows; "
                "revoke one it no longer uses, or move to a larger plan"
            )

    def revoke_agent(self, ctx: Ctx, agent_id: UUID, reason: str) -> None:
        """Revoke an agent's credentials."""
        agent = self._load(Agent, agent_id, ctx.tenant_id)
        agent.revoke(ctx, check_reason(reason))
        self._save(agent)
