"""The policy sweeper's tasks, in ONE list (:func:`sweep_tasks`): exports, deletions, appeal windows, credit-lot
expiry, renewals, overdue invoices, price notices, retention by law, the daily checkpoint digest and, with billing
on, Stripe's tax rates kept to each subscription's VAT decision; each a class with ``name`` and
``run(now) -> events emitted`` (or notices queued), idempotent."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from api.appeal_window import appeal_window_sweep
from api.billing_config import billing_config
from api.billing_service import build_billing_service
from api.billing_sweep import BillingSweep, StripeTaxSweep
from api.checkpoint_digest import CheckpointDigest
from api.credit_debits import CreditExpirySweep
from api.exports import ExportBuilder, ExportFiles
from api.price_notices import PriceNotices
from api.retention_sweep import ActivityRetentionDue, BillingRetentionDue
from api.services import Services
from api.stores import handler_locks
from api.sweeper import Sweeper, SweepTask
from domain.errors import DomainError

log = logging.getLogger(__name__)
BATCH = 200  # due erasures per transaction (domain.commands.erasure.MAX_BATCH at most)
EXPORT_BATCH = 1000  # export expiries per transaction
SETTLE_S = 10.0  # how long an export waits for the read models to reach the log's head before the next pass


@dataclass
class DeletionsDue:
    """Erase every subject whose deletion window has ended (accounts, and terminated tenants' data).

    Due deletions are erased in batches of ``batch`` (one key-store transaction, one event transaction,
    one catch-up each: ``domain.commands.erasure``); a batch with a refused item is erased again one at a
    time, so only that item waits for the next pass. ``batch=1``: one at a time throughout (the baseline).
    """

    services: Services
    files: ExportFiles
    batch: int = BATCH
    name: str = "deletions-due"

    def run(self, now: datetime) -> int:
        """Events recorded by this pass's erasures; a refused one (the tenant's last admin) is retried next pass."""
        due = [d.id for d in self.services.lifecycle.due_deletions(now)]
        emitted = 0
        for start in range(0, len(due), self.batch):
            chunk = due[start : start + self.batch]
            if len(chunk) > 1:
                try:
                    emitted += self._erase(chunk, now)
                    continue
                except DomainError as exc:
                    log.info("a batch of %d erasures was refused (%s); erasing them one at a time", len(chunk), exc)
            for deletion_id in chunk:
                try:
                    emitted += self._erase([deletion_id], now)
                except DomainError as exc:
                    log.warning("erasure of deletion %s refused: %s", deletion_id, exc)
        return emitted

    def _erase(self, deletion_ids: list[UUID], now: datetime) -> int:
        erasure = self.services.command(self.services.app.erase_subjects, deletion_ids, now=now,
                                        request_id=lambda d: f"sweep-erase-{d}")  # fmt: skip
        for export_id in erasure.exports:
            self.files.delete(export_id)
        return erasure.events


@dataclass
class ExportsExpired:
    """Expire export links 24 h after completion and delete their files (and any orphaned file)."""

    services: Services
    files: ExportFiles
    batch: int = EXPORT_BATCH
    name: str = "exports-expired"

    def run(self, now: datetime) -> int:
        """One ``DataExport.Expired`` per newly expired export (``batch`` to a transaction; a conflicting batch,
        say with a download at that instant, one at a time); files of expired exports are deleted."""
        lifecycle, emitted = self.services.lifecycle, 0
        expired = [export.id for export in lifecycle.expired_exports(now)]
        for start in range(0, len(expired), self.batch):
            chunk = expired[start : start + self.batch]
            try:
                emitted += self.services.command(self.services.app.expire_exports, chunk)
            except DomainError:
                emitted += sum(int(self.services.command(self.services.app.expire_export, e)) for e in chunk)
            for export_id in chunk:
                self.files.delete(export_id)
        for export_id in self.files.existing():  # a crash between the event and the unlink leaves a file
            view = lifecycle.exports.get(export_id)
            if view is not None and view.status == "expired":
                self.files.delete(export_id)
        return emitted


@dataclass
class ExportsRequested:
    """Build every requested export (the sweeper's thread is the background job)."""

    services: Services
    builder: ExportBuilder
    name: str = "exports-requested"

    def run(self, now: datetime) -> int:
        """One ``DataExport.Completed`` per export built, from read models brought up to the log's head first."""
        emitted = 0
        exports = self.services.lifecycle.requested_exports()
        if exports and not self._settled():
            log.info("read models behind the log: %d exports wait for the next pass", len(exports))
            return 0
        for export in exports:
            try:
                built = self.builder.build(export, now)
            except Exception as exc:  # one export that cannot be built holds back no other
                log.warning("export %s could not be built (%s); retried on the next pass", export.id,
                            type(exc).__name__)  # fmt: skip
                continue
            done = self.services.command(self.services.app.complete_export, export.id, files=built.files,
                                         size=built.size, sha256=built.sha256, now=now)  # fmt: skip
            emitted += int(done)
        return emitted

    def _settled(self, timeout_s: float = SETTLE_S) -> bool:
        """Wait until the tracked read models an export reads (usage, audit) hold every event recorded so far;
        they may be written by another process (``ownllm projections run``)."""
        target = self.services.runner.log.head()
        deadline = time.monotonic() + timeout_s
        while min(self.services.audit.stored_position(), self.services.usage.stored_position()) < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


@dataclass
class SubjectKeysVacuum:
    """VACUUM the PostgreSQL subject-key table after keys were destroyed, at most once per interval."""

    services: Services
    name: str = "subject-keys-vacuum"
    _last: float = float("-inf")

    def run(self, now: datetime) -> int:
        """Emits no event: it only makes destroyed keys' old row versions go."""
        vacuum = getattr(self.services.keys, "vacuum", None)
        at = time.monotonic()
        if vacuum is None or at - self._last < self.services.settings.keys_vacuum_interval_s:
            return 0
        if vacuum():
            self._last = at
        return 0


def export_files(services: Services) -> ExportFiles:
    """Where this deployment keeps export files."""
    return ExportFiles(services.settings.exports_path)


def export_builder(services: Services) -> ExportBuilder:
    """The builder over this process's read models."""
    return ExportBuilder(export_files(services), services.directory, services.lifecycle, services.usage,
                         services.audit, services.billing, services.credit_view,
                         services.settings.activity_jurisdiction)  # fmt: skip


def sweep_tasks(services: Services) -> list[SweepTask]:
    """Every task the sweeper runs, in order. Billing's tasks join this list."""
    files = export_files(services)
    return [
        ExportsRequested(services, export_builder(services)),
        DeletionsDue(services, files),
        ExportsExpired(services, files),
        SubjectKeysVacuum(services),
        appeal_window_sweep(services),
        CreditExpirySweep(services.app, services.credits.due),
        BillingSweep(services.app, services.billing, services.runner.catch_up),
        PriceNotices(services),
        BillingRetentionDue(services, services.runner.catch_up),
        ActivityRetentionDue(services),
        CheckpointDigest(services),
        *_stripe_tasks(services),
    ]


def _stripe_tasks(services: Services) -> list[SweepTask]:
    """The tasks that ask Stripe, when billing is on."""
    config = billing_config(services.settings)
    if not config.enabled:
        return []
    return [StripeTaxSweep(build_billing_service(config, services), services.billing)]


def build_sweeper(services: Services) -> Sweeper:
    """The sweeper over :func:`sweep_tasks`, with its own lock (one sweeping process per store)."""
    settings = services.settings
    return Sweeper(sweep_tasks(services), handler_locks(settings), services.app.clock, settings.sweep_interval_s)
