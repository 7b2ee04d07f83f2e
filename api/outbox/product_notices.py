"""The other notices the terms promise: a terms change (§18), a suspected shared key (§3), an export ready,
a deletion scheduled (§11), a contract ended by rejecting new terms. A tracked reaction, like the suspension
notices; each notice's id follows from the event and the recipient, so a repeat queues nothing new.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from api.outbox.notices import notice_id
from api.outbox.reaction import recipients
from api.outbox.store import Notice, Outbox
from domain.api_key import ApiKey
from domain.data_export import DataExport
from domain.deletion import Deletion
from domain.terms import Publication, TermsAnswer
from projections.directory import Directory
from projections.lifecycle import LifecycleView
from projections.log import topics_of

Mail = tuple[str, str]  # subject, body


class ProductNotices:
    """Queues one notice per recipient for each event below (recipients looked up when queuing)."""

    name = "outbox-product-notices"
    topics = topics_of(
        [Publication.Published, ApiKey.SharingSuspected, DataExport.Completed, Deletion.Requested, TermsAnswer.Rejected]
    )

    def __init__(
        self,
        outbox: Outbox,
        directory: Directory,
        lifecycle: LifecycleView,
        catch_up: Callable[[], object],
        clock: Callable[[], datetime],
        base_url: str,
        queued: Callable[[], object] = lambda: None,
    ) -> None:
        self.outbox, self.directory, self.lifecycle = outbox, directory, lifecycle
        self.catch_up, self.clock, self.base_url, self.queued = catch_up, clock, base_url, queued

    def handle(self, event: Any, position: int) -> None:
        """Queue the event's notices."""
        self.catch_up()
        for tenant_id, users, (subject, body) in self._mails(event):
            for user_id in users:
                notice = Notice(
                    notice_id(event, user_id), "generic", subject, body, tenant_id=tenant_id, to_user=user_id
                )
                self.outbox.enqueue(notice, self.clock())
        self.queued()

    def _mails(self, e: Any) -> Iterable[tuple[UUID, list[UUID], Mail]]:
        if isinstance(e, Publication.Published):
            mail = terms_change(e, self.base_url)
            return [
                (t, recipients(self.directory, t), mail) for t, v in self.directory.tenants.items() if not v.terminated
            ]
        if isinstance(e, ApiKey.SharingSuspected):
            key = self.directory.keys.get(e.originator_id)
            owner = key.user_id if key is not None else None
            return [(e.tenant_id, recipients(self.directory, e.tenant_id, owner), sharing_suspected(e, self.base_url))]
        if isinstance(e, DataExport.Completed):
            export = self.lifecycle.exports.get(e.originator_id)
            to = [export.requested_by] if export is not None and export.requested_by is not None else []
            return [(e.tenant_id, to, export_ready(e, self.base_url))]
        if isinstance(e, Deletion.Requested):
            also = e.subject_id if e.subject_kind == "user" else None
            return [(e.tenant_id, recipients(self.directory, e.tenant_id, also), deletion_scheduled(e, self.base_url))]
        if isinstance(e, TermsAnswer.Rejected):
            return [(e.tenant_id, recipients(self.directory, e.tenant_id), terms_rejected(e))]
        return []


def terms_change(e: Publication.Published, base_url: str) -> Mail:
    """Terms §18: at least 30 days' notice of a material change, with its date and the right to leave."""
    ref = f"{e.document}-{e.version}"
    body = (
        f"We have published a new version of our {e.document} ({ref}). It takes effect on "
        f"{e.effective_at:%Y-%m-%d %H:%M %Z}.\n\n"
        f"Read it: GET {base_url}/api/v1/legal/{ref}\n"
        "Using the service after that date is acceptance. "
        + (
            "If you do not accept it, an admin may reject it before that date and the contract ends without "
            "penalty, with a refund of prepaid fees for the remaining time:\n"
            f"  POST {base_url}/api/v1/terms/{ref}/reject\n"
            if e.material and e.document == "terms"
            else "\n"
        )
    )
    return f"OwnLLM: new {e.document} take effect on {e.effective_at:%Y-%m-%d}", body


def sharing_suspected(e: ApiKey.SharingSuspected, base_url: str) -> Mail:
    """Terms §3: credentials are personal; a key seen from many networks looks shared."""
    action = (
        f"It is suspended until an admin reinstates it:\n  POST {base_url}/api/v1/keys/{e.originator_id}/reinstate\n"
        if e.suspended
        else "It still works; revoke it and issue one key per person if it is shared.\n"
    )
    body = (
        f"The API key {e.originator_id} was used from {e.network_count} networks and {e.user_agent_count} programs "
        f"within {e.window_s // 3600} hours, more than one person uses. Each user must use keys issued to them "
        f"(terms §3).\n\n{action}"
    )
    return "OwnLLM: an API key looks shared", body


def export_ready(e: DataExport.Completed, base_url: str) -> Mail:
    """The export is ready, until its link expires."""
    body = (
        f"Your data export {e.originator_id} is ready ({e.files} files, {e.size} bytes, SHA-256 {e.sha256}).\n"
        f"Download it before {e.expires_at:%Y-%m-%d %H:%M %Z}:\n"
        f"  GET {base_url}/api/v1/exports/{e.originator_id}/download\n"
    )
    return "OwnLLM: your data export is ready", body


def deletion_scheduled(e: Deletion.Requested, base_url: str) -> Mail:
    """Terms §11: deleted 30 days after the request; restorable until then."""
    body = (
        f"A deletion of {e.subject_kind} {e.subject_id} was requested. It will be erased on "
        f"{e.due_at:%Y-%m-%d %H:%M %Z}; until then it can be restored (DELETE {base_url}/api/v1/me/deletion, "
        "or an admin for a user).\n"
    )
    return "OwnLLM: deletion scheduled", body


def terms_rejected(e: TermsAnswer.Rejected) -> Mail:
    """The rejection ends the contract (terms §18)."""
    body = (
        f"Your organisation rejected {e.document}-{e.version}. The contract ends without penalty; "
        f"a refund of {e.refund_due_cents / 100:.2f} {e.currency} for the prepaid time is due. Members' data is "
        "erased within 30 days; request an export before then if you need one.\n"
    )
    return "OwnLLM: contract ended", body
