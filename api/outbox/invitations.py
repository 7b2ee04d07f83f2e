"""Invitations by mail: queued when SMTP is configured (the admin gets the token in the answer either way)."""

from __future__ import annotations

from typing import Any
from uuid import uuid5

from api.outbox.notices import invitation_notice
from api.outbox.store import Notice
from domain.commands.access import IssuedSecret
from domain.context import Ctx
from domain.ids import NAMESPACE


def mail_invitation(mailer: Any, ctx: Ctx, issued: IssuedSecret, email: str, role: str) -> bool:
    """Queue the invitation to ``email`` (once per invite); False when no mail goes out."""
    if mailer is None or not mailer.sends_mail:
        return False  # the embedded default: no invitation tokens rest in a local outbox
    expires = issued.expires_at.isoformat() if issued.expires_at else "it expires"
    subject, body = invitation_notice(issued.secret, role, mailer.base_url, expires)
    notice = Notice(uuid5(NAMESPACE, f"notice:invite:{issued.id}"), "invitation", subject, body,
                    tenant_id=ctx.tenant_id, to_address=email.strip().lower())  # fmt: skip
    return bool(mailer.queue(notice))
