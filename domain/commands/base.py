"""What every command shares: the clock, loading within a tenant, and saving atomically."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
    project_aggregate,
)
from eventsourcing.domain import Aggregate, DomainEventProtocol, Snapshot
from eventsourcing.persistence import IntegrityError, Tracking

from domain import secrets
from domain.errors import Conflict, InvalidValue, NotFound
from domain.tenant import Tenant
from legal.documents import LegalDocument
from legal.documents import bundled as bundled_documents

EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_NAME = 200
MAX_REASON = 1000
TAggregate = TypeVar("TAggregate", bound=Aggregate)

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


class AgentRow(Protocol):
    """An agent as the directory lists it: revoked or not."""

    @property
    def revoked_at(self) -> datetime | None:
        """When its credentials were revoked (None while active)."""
        ...


class TenantRow(Protocol):
    """A tenant as the directory lists it: its plan (empty for the default plan)."""

    @property
    def plan(self) -> str:
        """The plan's name, or "" when none was assigned."""
        ...


class Directory(Protocol):
    """What commands need to know across aggregates; implemented by the directory projection."""

    @property
    def tenants(self) -> Mapping[UUID, TenantRow]:
        """Every tenant by id."""
        ...

    def email_taken(self, tenant_id: UUID, email: str, now: datetime) -> bool:
        """A current (not removed) user or open invite of the tenant has this email."""
        ...

    def tenant_agents(self, tenant_id: UUID) -> Sequence[AgentRow]:
        """A tenant's agents, active and revoked."""
        ...


class CredentialHasher(Protocol):
    """Hashes a machine credential (an agent's NATS password) in the form its verifier reads."""

    def __call__(self, password: str) -> str:
        """The hash to store; the password itself is never stored."""
        ...


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
    if len(reason) > MAX_REASON:
        raise InvalidValue(f"reason must be at most {MAX_REASON} characters", "reason")
    return reason


_REACTION: ContextVar[ProcessingEvent[UUID] | None] = ContextVar("ownllm_reaction", default=None)


class Commands(Application[UUID]):
    """The base of every context's commands: settings they share and the load/save helpers."""

    pepper: bytes
    directory: Directory | None
    clock: Callable[[], datetime]
    invite_ttl: timedelta
    pairing_ttl: timedelta
    hash_credential: CredentialHasher
    legal_documents: Sequence[LegalDocument] = ()  # empty: the bundled documents (tests give their own)

    def construct_repository(self) -> Repository[UUID]:
        """The library's repository reading events only: with snapshots on, it asked the snapshot store before
        every load, a round trip for nothing (only credit ledgers have them; they load from their latest)."""
        repository = super().construct_repository()
        repository.snapshot_store = None
        return repository

    def documents(self) -> Sequence[LegalDocument]:
        """The legal documents this application knows, in every version."""
        return self.legal_documents or bundled_documents()

    # -- reactions ---------------------------------------------------------------------------

    @contextmanager
    def reacting(self, tracking: Tracking) -> Iterator[ProcessingEvent[UUID]]:
        """Commands run inside are recorded together with ``tracking``, in one transaction.

        A reaction handler issues ordinary commands; what they save is held back and written with
        the handler's new position at the end, so the reaction happens exactly once or not at all.
        The position of an event that caused no command is saved by the reaction runner itself
        (the unit it gets back then holds no events).
        """
        unit: ProcessingEvent[UUID] = ProcessingEvent(tracking)
        token = _REACTION.set(unit)
        try:
            yield unit
        finally:
            _REACTION.reset(token)
        if unit.events:
            self._record(unit)
            self._take_snapshots(unit)

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshot each aggregate just recorded whose events crossed a multiple of its class's interval.

        From the aggregate in memory, which is the state just recorded (eventsourcing's own way loads it
        again from the store).
        """
        intervals = self.snapshotting_intervals
        if self.snapshots is None or not intervals:
            return
        recorded: Counter[UUID] | None = None  # counted only when a snapshotted kind was saved (not per usage batch)
        for aggregate_id, aggregate in processing_event.aggregates.items():
            every = intervals.get(type(aggregate))
            if not every:
                continue
            recorded = recorded or Counter(event.originator_id for event in processing_event.events)
            if aggregate.version // every > (aggregate.version - recorded[aggregate_id]) // every:
                self._put_snapshot(aggregate)

    def _put_snapshot(self, aggregate: Any) -> None:
        """Store a snapshot of an aggregate as recorded, then drop its older ones (only the latest is read);
        one that fails is logged, never raised (what was recorded stands, and the next interval's will do)."""
        assert self.snapshots is not None
        snapshot_class = getattr(type(aggregate), "Snapshot", Snapshot)
        try:
            self.snapshots.put([snapshot_class.take(aggregate)])
            delete_before = getattr(self.snapshots.recorder, "delete_before", None)  # not in memory
            if delete_before is not None:
                delete_before(aggregate.id, aggregate.version)
        except Exception as exc:
            log.warning("snapshot of %s at version %d not stored, or its older ones not dropped (%s)", aggregate.id,
                        aggregate.version, type(exc).__name__)  # fmt: skip

    # -- loading -----------------------------------------------------------------------------

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

    # -- saving ------------------------------------------------------------------------------

    def _save(self, *aggregates: Aggregate, conflict: Exception | None = None) -> None:
        """Save atomically; a version conflict (a duplicate natural key, or two requests changing the
        same aggregate at once) becomes ``conflict``, never a bare IntegrityError (an HTTP 500)."""
        try:
            self._save_now(*aggregates)
        except IntegrityError:
            raise conflict or Conflict("it was changed by another request at the same time; retry") from None

    def _save_now(self, *aggregates: Aggregate) -> None:
        """Save, or hold back for the enclosing reaction's transaction (see :meth:`reacting`)."""
        unit = _REACTION.get()
        if unit is None:
            self.save(*aggregates)
        else:
            unit.collect_events(*aggregates)


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
