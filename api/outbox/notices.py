"""What each notice says: short, naming no one, holding only what the recipient needs to act."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from api.outbox.store import Notice
from domain.appeal import Appeal
from domain.ids import NAMESPACE
from domain.suspension import Suspension

REASONS = {
    "security_risk": "a security risk",
    "abuse": "ongoing abuse",
    "shared_credentials": "shared credentials (each user must use credentials issued to them)",
    "unpaid_invoice": "unpaid invoices",
    "other": "another reason given below",
}
KIND_NAMES = {"tenant": "Your organisation's access", "user": "A user's access", "api_key": "An API key"}


def notice_id(event: Any, recipient: UUID) -> UUID:
    """One notice per event and recipient, whoever queues it and however often."""
    return uuid5(NAMESPACE, f"notice:{event.originator_id}:{event.originator_version}:{recipient}")


def suspension_notice(e: Suspension.Imposed, base_url: str) -> tuple[str, str]:
    """Subject and body of a suspension's summary explanation (terms §8)."""
    what = KIND_NAMES.get(e.subject_kind, "Access")
    body = (
        f"{what} to OwnLLM was suspended by the operator ({e.subject_kind} {e.subject_id}).\n\n"
        f"Reason: {REASONS.get(e.reason_code, e.reason_code)}.\n"
        f"Summary: {e.summary}\n\n"
        f"You may appeal until {e.appeal_until.isoformat()} (30 days after the suspension):\n"
        f'  POST {base_url}/api/v1/appeals  {{"suspension_id": "{e.originator_id}", "statement": "..."}}\n'
        "with an admin's API key; it works while the organisation is suspended.\n"
    )
    return "OwnLLM: access suspended", body


def decision_notice(e: Appeal.Decided) -> tuple[str, str]:
    """Subject and body of an appeal's decision."""
    if e.outcome == "lifted":
        verdict = "Your appeal was granted: the suspension is lifted and access works again."
    else:
        verdict = "Your appeal was not granted: the suspension stays in force."
    body = f"{verdict}\n\nAppeal: {e.originator_id}\nReason: {e.reason}\n"
    return f"OwnLLM: appeal {e.outcome}", body


def invitation_notice(token: str, role: str, base_url: str, expires_at: str) -> tuple[str, str]:
    """Subject and body of an invitation: the token is the credential, purged once sent."""
    body = (
        f"You are invited to join an organisation on OwnLLM as {role}.\n\n"
        f"Accept before {expires_at}:\n"
        f'  POST {base_url}/api/v1/invites/accept  {{"token": "{token}", "name": "<your name>"}}\n'
    )
    return "OwnLLM: you are invited", body


def generic_notice(
    key: str, subject: str, body: str, *, tenant_id: UUID | None = None, to_user: UUID | None = None,
    to_address: str | None = None,
) -> Notice:  # fmt: skip
    """A notice of any other kind (deletion, export, terms, price change): its id follows from ``key``
    (e.g. ``"terms:2027-02:<user id>"``), so queuing it twice queues it once."""
    return Notice(uuid5(NAMESPACE, f"notice:{key}"), "generic", subject, body, tenant_id=tenant_id, to_user=to_user,
                  to_address=to_address)  # fmt: skip
