"""The composition of the write side and the read side that every controller and the CLI use."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID, uuid4

from api.auth import KeyAuthenticator
from api.contract_end import ForfeitCreditsOnTermination, TerminateOnRejectedTerms, prepaid_fees
from api.credit_debits import CreditDebits
from api.ledger_keys import build_ledger
from api.secret_files import (
    private_dir,
)
from api.settings import Settings
from api.stores import eventsourcing_env, key_store, pepper, reaction_runner
from api.terms_use import ContinuedUse
from domain.adapters.credentials import bcrypt_hash
from domain.application import OwnLLM, utc_now
from domain.context import Ctx
from domain.sealing import KeyStore
from legal.documents import load as load_documents
from projections.audit_log import AuditProjection, AuditTable
from projections.audit_postgres import PostgresAuditTable
from projections.audit_tables import SQLiteAuditTable
from projections.billing_ledger import BillingLedger, BillingTable
from projections.billing_tables import PostgresBillingTable, SQLiteBillingTable
from projections.billing_view import BillingView
from projections.credit_balances import CreditBalances
from projections.credit_tables import PostgresCreditTables, SQLiteCreditTables
from projections.credit_view import CreditProjection, CreditTables
from projections.directory import Directory
from projections.enforcement import Enforcement
from projections.integrity.ledger import Ledger
from projections.ledger_postgres import PostgresLedgerTables
from projections.ledger_sqlite import SQLiteLedgerTables
from projections.lifecycle import ErasureFollower, LifecycleView
from projections.reactions import ReactionRunner
from projections.registry import ReadModels
from projections.retention import RetentionView
from projections.runner import ProjectionRunner
from projections.status import failure_log_for
from projections.usage_tables import PostgresUsageView, SQLiteUsageView
from projections.usage_view import UsageProjection, UsageView

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Services:
    """The application, its projections and the authenticator, built once per process."""

    settings: Settings
    app: OwnLLM
    keys: KeyStore
    directory: Directory
    usage: UsageProjection
    audit: AuditProjection
    runner: ProjectionRunner
    reactions: ReactionRunner
    authenticator: KeyAuthenticator
    read_models: ReadModels
    ledger: Ledger | None = None  # the integrity ledger (api/ledger_keys.py)
    terms_use: ContinuedUse | None = None  # records acceptance of new terms by use (api/terms_use.py)
    enforcement: Enforcement = field(default_factory=Enforcement)  # operator tokens, suspensions, appeals
    outbox: Any = None  # the e-mail outbox once attached (api/outbox: attach_outbox)
    lifecycle: LifecycleView = field(default_factory=lambda: LifecycleView(Directory()))  # deletions, exports
    sweeper: Any = None  # the policy sweeper (api/sweeper.py) where this process runs one
    billing: BillingView = field(default_factory=BillingView)  # invoices, payments, subscriptions (issue 15)
    retention: RetentionView = field(default_factory=RetentionView)  # what retention by law still keeps
    billing_ledger: BillingLedger | None = None  # every billing fact as a row, kept for the retention period
    credits: CreditBalances = field(default_factory=CreditBalances)  # balances and prices, for the proxy
    credit_view: CreditProjection | None = None  # lots, movements, notices (projections/credit_view.py)
    agent_listeners: list[Callable[[], object]] = field(default_factory=list)
    closers: list[Callable[[], object]] = field(default_factory=list)  # run first on close, newest first
    _agents_seen: int = -1
    _notify_lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def command(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a command, then bring the projections up to date so the caller reads its own write.

        A failed catch-up never turns a saved command into an error (a retry would repeat the
        command); the runner's next poll retries it.
        """
        try:
            return fn(*args, **kwargs)
        finally:
            try:
                self.runner.catch_up()
            except Exception as exc:
                log.warning("projections not caught up after a command (%s); the next poll retries", type(exc).__name__)
            self.reactions.wake()

    def on_close(self, closer: Callable[[], object]) -> None:
        """Run ``closer`` when the services close, before the runners and stores stop."""
        self.closers.append(closer)

    def on_agents_changed(self, listener: Callable[[], object]) -> None:
        """Call ``listener`` now and whenever an agent is paired or revoked (not on every event)."""
        self.agent_listeners.append(listener)
        listener()

    def notify(self) -> None:
        """After the projections moved on: tell agent listeners, only if the agent set changed.

        The change counts as told only once every listener has run, so a failing one is called
        again on the next advance. (What must survive a crash, NATS's authorization, is a tracked
        reaction instead: see ``api/reactions.py``.)
        """
        with self._notify_lock:
            version = self.directory.agents_version
            if version == self._agents_seen:
                return
            for listener in self.agent_listeners:
                listener()
            self._agents_seen = version

    def close(self) -> None:
        """Stop the runners and release connections (once; the app's shutdown and its owner may both ask)."""
        if self._closed:
            return
        self._closed = True
        for closer in reversed(self.closers):
            closer()
        if self.terms_use is not None:
            self.terms_use.close()
        if self.sweeper is not None:
            self.sweeper.stop()
        self.reactions.stop()
        if self.ledger is not None:
            self.ledger.stop()
        self.runner.stop()
        self.app.close()
        self.keys.close()


def build_services(
    settings: Settings, *, start_runner: bool = True, clock: Callable[[], datetime] = utc_now
) -> Services:
    """Wire the event store, key store, projections and authenticator from settings."""
    private_dir(settings.var_dir)  # 0700: the event store, subject keys and secrets live here
    keys = key_store(settings)
    directory = Directory()
    secret_pepper = pepper(settings)
    app = OwnLLM(
        eventsourcing_env(settings),
        keys=keys,
        pepper=secret_pepper,
        hash_credential=bcrypt_hash,
        directory=directory,
        clock=clock,
        invite_ttl=timedelta(seconds=settings.invite_ttl_s),
        pairing_ttl=timedelta(seconds=settings.pairing_ttl_s),
    )
    app.default_plan = settings.default_plan  # the agent cap of a tenant without a plan
    if settings.legal_dir:  # the operator's own documents instead of the bundled ones
        app.legal_documents = load_documents(Path(settings.legal_dir))
    app.seller_jurisdiction = settings.seller_jurisdiction  # whose VAT and billing retention rules apply
    app.default_jurisdiction = settings.activity_jurisdiction  # a tenant's activity retention until it sets one
    app.price_notice = timedelta(days=settings.price_notice_days)  # before a token price change takes effect
    view_class = SQLiteUsageView if settings.persistence == "sqlite" else PostgresUsageView
    usage = UsageProjection(cast(UsageView, app.factory.tracking_recorder(view_class)))
    audit_class = SQLiteAuditTable if settings.persistence == "sqlite" else PostgresAuditTable
    audit = AuditProjection(cast(AuditTable, app.factory.tracking_recorder(audit_class)))
    read_models = ReadModels()
    read_models.add_in_memory("directory", directory)
    enforcement = Enforcement()
    read_models.add_in_memory("enforcement", enforcement)
    lifecycle = LifecycleView(directory)  # deletions, terminations and exports (the sweeper's questions)
    read_models.add_in_memory("lifecycle", lifecycle)
    read_models.add_in_memory("erasures", ErasureFollower(keys))  # an erasure elsewhere drops our cached key
    app.lifecycle_index = lifecycle
    billing = BillingView()
    read_models.add_in_memory("billing_view", billing)
    retention = RetentionView()  # contact keys per fiscal year, terminated tenants (the retention sweep's questions)
    read_models.add_in_memory("retention", retention)
    credit_balances = CreditBalances()
    read_models.add_in_memory("credit-balances", credit_balances)
    read_models.add_tracked(usage)
    read_models.add_tracked(audit)
    billing_class = SQLiteBillingTable if settings.persistence == "sqlite" else PostgresBillingTable
    billing_ledger = BillingLedger(cast(BillingTable, app.factory.tracking_recorder(billing_class)))
    read_models.add_tracked(billing_ledger)
    credit_class = SQLiteCreditTables if settings.persistence == "sqlite" else PostgresCreditTables
    credit_view = CreditProjection(cast(CreditTables, app.factory.tracking_recorder(credit_class)))
    read_models.add_tracked(credit_view)
    # The integrity ledger: every stored event a leaf, checkpoints signed with a key kept out of the database.
    ledger_class = SQLiteLedgerTables if settings.persistence == "sqlite" else PostgresLedgerTables
    ledger = build_ledger(settings, app.factory.tracking_recorder(ledger_class), clock)
    read_models.add_tracked(ledger)
    tracked = list(read_models.tracked.values()) if settings.run_projections else []
    failures = failure_log_for(app.recorder)  # read models' and reactions' failures, for `projections status`
    services = Services(
        settings=settings,
        app=app,
        keys=keys,
        directory=directory,
        usage=usage,
        audit=audit,
        runner=ProjectionRunner(app, list(read_models.in_memory.values()), tracked, failure_log=failures),
        reactions=reaction_runner(settings, app, failures),
        authenticator=KeyAuthenticator(
            directory, secret_pepper, lambda: clock().timestamp(), default_plan=settings.default_plan
        ),
        read_models=read_models,
        ledger=ledger,
        enforcement=enforcement,
        lifecycle=lifecycle,
        billing=billing,
        retention=retention,
        billing_ledger=billing_ledger,
        credits=credit_balances,
        credit_view=credit_view,
    )
    # Usage debits prepaid credits (api/credit_debits.py); idle while the in-memory model, current
    # through the batch, knows no tenant on credits.
    runner = services.runner
    services.reactions.add(
        CreditDebits(app, lambda upto: runner.position >= upto and not credit_balances.debiting_tenants)
    )
    services.reactions.add(ForfeitCreditsOnTermination(app))
    services.reactions.add(TerminateOnRejectedTerms(app))
    app.prepaid_fees = prepaid_fees(billing)  # the refund of a rejection of new terms (terms §18)
    services.runner.on_advance = services.notify
    services.authenticator.directory_behind_s = services.runner.seconds_behind  # fail closed when stale
    services.terms_use = continued_use(services, clock)
    services.authenticator.on_use = services.terms_use
    if start_runner:
        services.runner.start()
        services.reactions.start()
        if settings.run_projections:
            ledger.start_timer()
    else:
        services.runner.catch_up()
    return services


def continued_use(services: Services, clock: Callable[[], datetime]) -> ContinuedUse:
    """Acceptance of the terms in force by a tenant's first use after they take effect (terms §18)."""

    def record(tenant_id: UUID, ref: str, actor: str) -> object:
        ctx = Ctx(actor=actor, tenant_id=tenant_id, request_id=f"use-{uuid4()}")
        return services.command(services.app.accept_terms, ctx, ref, "continued_use")

    return ContinuedUse(services.app.documents(), clock, record)
