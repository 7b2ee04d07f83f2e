"""Erasure of due deletions (GDPR Art. 17): one at a time, or a batch in one key-store and one event transaction.

An erasure destroys the subject's key first (crypto-shredding: every value sealed with it reads
``<erased>`` from then on, in the events, their replays and every read model built from them), then
records, in one save, the revocation of the subject's API keys, their removal, the expiry of their
exports and ``Deletion.SubjectErased`` (ids only). A crash between the two leaves the data already
gone and the deletion still pending: the next sweep records the rest.

:meth:`ErasureCommands.erase_subjects` does the same for many due deletions at once: every change is
planned in memory first (aggregates shared within the batch, so two erasures touching one tenant or
one export change the same object, as they would one after the other), then every key is destroyed
in one key-store transaction (one WAL checkpoint on SQLite) and every event saved in one
transaction. A refusal while planning (the tenant's last admin) raises before anything is destroyed
or saved; the caller then erases that batch one at a time, so only the refused item is held back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEventProtocol

from domain.agent import Agent
from domain.api_key import ApiKey
from domain.commands.base import Commands, _checked_tenant
from domain.context import SYSTEM, Ctx
from domain.data_export import DataExport
from domain.deletion import Deletion, SubjectKind
from domain.sealing import KeyStore
from domain.tenant import Tenant
from domain.user import User
from policies.lifecycle import is_due

ERASED_REASON = "account erased"
MAX_BATCH = 1000  # deletions erased in one transaction: bounds its size and what a failure sends back


class LifecycleIndex(Protocol):
    """What erasure must find across aggregates; implemented by the lifecycle read model."""

    def active_keys(self, tenant_id: UUID, user_id: UUID) -> Sequence[UUID]:
        """The user's API keys that are not revoked."""
        ...

    def members(self, tenant_id: UUID) -> Sequence[UUID]:
        """The tenant's users, removed ones included."""
        ...

    def active_agents(self, tenant_id: UUID) -> Sequence[UUID]:
        """The tenant's agents that are not revoked."""
        ...

    def live_exports(self, tenant_id: UUID, subject_id: UUID) -> Sequence[UUID]:
        """Exports about ``subject_id`` (a user; the tenant: every export of it) that have not expired."""
        ...


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did: the exports whose files must be deleted, and how many events it recorded."""

    exports: list[UUID]
    events: int


@dataclass
class _Plan:
    """Erasures planned in memory: the aggregates they change (shared by id) and the subjects to destroy."""

    loaded: dict[UUID, Aggregate | None] = field(default_factory=dict)
    changed: dict[UUID, Aggregate] = field(default_factory=dict)
    subjects: list[UUID] = field(default_factory=list)
    exports: list[UUID] = field(default_factory=list)


def fold(stream: Sequence[DomainEventProtocol[UUID]]) -> Aggregate | None:
    """The aggregate its events make (None for no events): ``project_aggregate`` without its per-event
    runtime-protocol ``isinstance`` assertion, a third of a batch's time over many small aggregates."""
    aggregate: Aggregate | None = None
    for domain_event in stream:
        aggregate = domain_event.mutate(aggregate)  # type: ignore[attr-defined]
    return aggregate


class ErasureCommands(Commands):
    """Carrying out due deletions; see the module docstring."""

    keys: KeyStore
    lifecycle_index: LifecycleIndex | None = None  # wired by the composition root

    def erase_subject(self, deletion_id: UUID, *, now: datetime, request_id: str) -> Erasure:
        """Carry out a due deletion: the exports whose files must go, and the events recorded.

        Nothing happens (and nothing is recorded) when it is not due at ``now`` or no longer pending.
        """
        return self.erase_subjects([deletion_id], now=now, request_id=lambda _: request_id)

    def erase_subjects(
        self, deletion_ids: Sequence[UUID], *, now: datetime, request_id: Callable[[UUID], str]
    ) -> Erasure:
        """Carry out up to :data:`MAX_BATCH` due deletions together; those not due or not pending are skipped.

        A refusal of any (a domain error) raises before any key is destroyed or event saved.
        """
        if len(deletion_ids) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} deletions at once")
        plan = _Plan()
        self._prefetch(plan, deletion_ids)
        for deletion_id in deletion_ids:
            self._plan_one(plan, deletion_id, now, request_id(deletion_id))
        if not plan.subjects:
            return Erasure([], 0)
        self.keys.destroy_many(plan.subjects)  # the erasure itself; all else is bookkeeping
        aggregates = list(plan.changed.values())
        events = sum(len(a.pending_events) for a in aggregates)
        self._save(*aggregates)
        return Erasure(list(dict.fromkeys(plan.exports)), events)

    def _prefetch(self, plan: _Plan, deletion_ids: Sequence[UUID]) -> None:
        """Read the deletions in one query where the recorder can, then their tenants, users and keys in another."""
        self._read_into(plan, list(deletion_ids))
        ids: list[UUID] = []
        for deletion in [d for d in plan.loaded.values() if isinstance(d, Deletion)]:
            ids += [deletion.tenant_id, deletion.subject_id]
            if deletion.subject_kind == SubjectKind.USER:
                ids += self._index().active_keys(deletion.tenant_id, deletion.subject_id)
        self._read_into(plan, [i for i in ids if i not in plan.loaded])

    def _read_into(self, plan: _Plan, ids: list[UUID]) -> None:
        for aggregate_id, stream in self._streams(ids).items():
            plan.loaded[aggregate_id] = fold(stream)

    def _load_in(self, plan: _Plan, aggregate_id: UUID) -> Aggregate | None:
        if aggregate_id not in plan.loaded:
            plan.loaded[aggregate_id] = self._get(aggregate_id)
        return plan.loaded[aggregate_id]

    def _plan_one(self, plan: _Plan, deletion_id: UUID, now: datetime, request_id: str) -> None:
        deletion = self._load_in(plan, deletion_id)
        if not isinstance(deletion, Deletion) or deletion.status != "pending" or not is_due(deletion.due_at, now):
            return
        ctx = Ctx(actor=SYSTEM, tenant_id=deletion.tenant_id, request_id=request_id)
        tenant = _checked_tenant(self._load_in(plan, deletion.tenant_id))
        if deletion.subject_kind == SubjectKind.USER:
            changed = self._retire_user(plan, ctx, tenant, deletion.subject_id)
        else:
            changed = self._retire_tenant(plan, ctx, tenant)
        exports = self._expire_exports(plan, ctx, deletion.subject_id)
        deletion.erase(ctx, now)
        for aggregate in (deletion, *changed, *exports):
            plan.changed[aggregate.id] = aggregate
        plan.subjects.append(deletion.subject_id)
        plan.exports += [export.id for export in exports]

    def _retire_user(self, plan: _Plan, ctx: Ctx, tenant: Tenant, user_id: UUID) -> list[Aggregate]:
        user = self._load_in(plan, user_id)
        if not isinstance(user, User):
            return []
        changed: list[Aggregate] = []
        for key_id in self._index().active_keys(tenant.id, user_id):
            key = self._load_in(plan, key_id)
            if isinstance(key, ApiKey) and not key.revoked:
                key.revoke(ctx, ERASED_REASON)
                changed.append(key)
        if not user.removed:
            if not tenant.terminated:
                tenant.step_down_admin(ctx, user_id)  # LastAdmin: refused, retried by the next sweep
                changed.append(tenant)
            user.remove(ctx, ERASED_REASON)
            changed.append(user)
        return changed

    def _retire_tenant(self, plan: _Plan, ctx: Ctx, tenant: Tenant) -> list[Aggregate]:
        changed: list[Aggregate] = []
        for agent_id in self._index().active_agents(tenant.id):
            agent = self._load_in(plan, agent_id)
            if isinstance(agent, Agent) and not agent.revoked:
                agent.revoke(ctx, "tenant terminated")
                changed.append(agent)
        return changed

    def _expire_exports(self, plan: _Plan, ctx: Ctx, subject_id: UUID) -> list[DataExport]:
        exports = []
        for export_id in self._index().live_exports(ctx.tenant_id, subject_id):
            export = self._load_in(plan, export_id)
            if isinstance(export, DataExport) and export.status != "expired":
                export.expire(ctx, "erased")
                exports.append(export)
        return exports

    def _index(self) -> LifecycleIndex:
        if self.lifecycle_index is None:
            raise RuntimeError("the lifecycle index is not wired (api/services.py)")
        return self.lifecycle_index
