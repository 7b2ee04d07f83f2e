"""The daily checkpoint digest (issue 14: "every checkpoint is offered to tenants ... and an e-mail digest
once the notice outbox exists"): after each UTC day in which a tenant's history grew, the tenant's
compliance officers and auditors (its admins when it has neither) receive that day's last signed
checkpoints of its own tree and of the global log. Saved as a file, the mail is a ``--pinned`` file for
``ownllm audit verify``: later bundles must extend what the tenant holds, so the operator cannot rewrite
history unnoticed. Queued once per day, tenant and recipient (the notice id follows from them)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from api.outbox import generic_notice
from api.services import Services
from domain.roles import Role
from projections.directory import Directory
from projections.integrity.ledger_rows import GLOBAL, CheckpointRow

READERS = (Role.COMPLIANCE_OFFICER.value, Role.AUDITOR.value)


def digest_day(now: datetime) -> date:
    """The last whole UTC day before ``now``: the one a digest sent at ``now`` covers."""
    return (now.astimezone(UTC) - timedelta(days=1)).date()


def digest_recipients(directory: Directory, tenant_id: UUID) -> list[UUID]:
    """The tenant's active compliance officers and auditors; its admins when it has none."""
    users = [u for u in directory.tenant_users(tenant_id) if not u.removed]
    readers = [u.id for u in users if u.role in READERS]
    return readers or [u.id for u in users if u.role == Role.ADMIN.value]


def digest_mail(day: date, own: CheckpointRow, log: CheckpointRow, base_url: str) -> tuple[str, str]:
    """Subject and body: the two signed notes as they must be saved, and how to use them."""
    body = (
        f"Your tenant's audit history grew on {day:%Y-%m-%d} (UTC). Below are that day's last signed checkpoints "
        f"of your tenant's log ({own.size} events) and of the whole log ({log.size} events).\n\n"
        "Keep this message as a file. Later, `ownllm audit verify BUNDLE --pinned THIS_FILE` proves that the log "
        "still extends these checkpoints: nobody, the operator included, removed or rewrote what they cover.\n"
        f"Every checkpoint, oldest first: {base_url}/api/v1/audit/checkpoints\n\n"
        f"{own.note}\n{log.note}"
    )
    return f"OwnLLM audit checkpoints for {day:%Y-%m-%d}", body


class CheckpointDigest:
    """Queues the digest of the last whole day once; a later pass of the same day only looks it up in memory."""

    name = "audit-checkpoint-digest"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.done: date | None = None

    def run(self, now: datetime) -> int:
        """How many digests were queued (0 without the ledger or the outbox in this process)."""
        ledger, outbox, day = self.services.ledger, self.services.outbox, digest_day(now)
        if ledger is None or outbox is None or self.done == day:
            return 0
        start = datetime.combine(day, time(), tzinfo=UTC)
        rows = {row.tree: row for row in ledger.tables.last_signed_between(start, start + timedelta(days=1))}
        log, queued = rows.pop(GLOBAL, None), 0
        for tree, own in rows.items():
            if log is None:  # a tenant checkpoint is always signed with a global one; never mail half a pair
                break
            tenant_id = UUID(tree)
            subject, body = digest_mail(day, own, log, self.services.settings.base_url)
            for user_id in digest_recipients(self.services.directory, tenant_id):
                notice = generic_notice(f"audit-digest:{day}:{tenant_id}:{user_id}", subject, body,
                                        tenant_id=tenant_id, to_user=user_id)  # fmt: skip
                queued += int(outbox.queue(notice))
        self.done = day
        return queued
