"""What each domain event says in the audit log: a stable dotted action, its subject and a summary.

Rows hold no personal data: the actor and subject are ids (display names are looked up when the
log is read, so an erased subject shows ``<erased>``), and summaries name only roles, scopes, key
prefixes and counts. Sealed free text (a suspension's reason) stays in the event, never here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from domain.agent import Agent
from domain.api_key import ApiKey
from domain.appeal import Appeal
from domain.audit_export import AuditExport
from domain.credit_ledger import CreditLedger
from domain.features import FeatureOptIn
from domain.invite import Invite
from domain.key_sharing import SharingPolicy
from domain.model_licence import ModelLicence
from domain.pairing_key import PairingKey
from domain.retention import ActivityRetention
from domain.suspension import Suspension
from domain.tenant import Tenant
from domain.terms import TermsAnswer
from domain.usage import RejectionTally, UsageRecord
from domain.user import User
from projections.audit_billing import BILLING_DESCRIBE

USAGE_ACTION = "usage.hourly"
# Not a row each: a debit per request is in the credit movements (projections/credit_view.py) as the
# usage is in the hourly rows; the price book is the platform's, no tenant's (each affected tenant's
# notice is in the credit notices outbox).
NOT_ROWS = (CreditLedger.Debited,)  # one per request, like usage records: the credit view holds them


class AuditEntry(NamedTuple):
    """One row of the audit log, before it has a position.

    A named tuple, not a frozen dataclass: a rebuild makes one per event and a page one per row, and a
    tuple is built in C.
    """

    tenant_id: UUID
    time: datetime
    actor: str
    action: str
    subject_kind: str
    subject_id: UUID
    summary: str
    request_id: str


Describe = Callable[[Any], tuple[str, str, UUID, str]]  # -> (action, subject kind, subject id, summary)


def _tenant(kind: str, summary: str) -> Describe:
    return lambda e: (f"tenant.{kind}", "tenant", e.originator_id, summary)


def _user(kind: str, summary: Callable[[Any], str]) -> Describe:
    return lambda e: (f"user.{kind}", "user", e.originator_id, summary(e))


def _object(prefix: str, subject: str, kind: str, summary: Callable[[Any], str]) -> Describe:
    return lambda e: (f"{prefix}.{kind}", subject, e.originator_id, summary(e))


def _scopes(e: ApiKey.Issued) -> str:
    expiry = f", expires {e.expires_at.isoformat()}" if e.expires_at else ""
    return f"key {e.prefix}… issued to user {e.user_id} with scopes {', '.join(sorted(e.scopes))}{expiry}"


def _refusals(e: RejectionTally.Counted) -> str:
    by_reason: dict[str, int] = {}
    for count in e.counts:
        by_reason[str(count.get("reason"))] = by_reason.get(str(count.get("reason")), 0) + int(count.get("count", 0))
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items()))
    return f"{sum(by_reason.values())} requests refused from {e.since.isoformat()} to {e.until.isoformat()}: {reasons}"


def _sharing_policy(e: SharingPolicy.Chosen | SharingPolicy.Changed) -> str:
    return "suspected shared keys are " + ("suspended" if e.suspend_shared_keys else "reported only")


DESCRIBE: dict[type, Describe] = {
    Tenant.Registered: lambda e: ("tenant.registered", "tenant", e.originator_id, f"tenant '{e.slug}' registered"),
    Tenant.Suspended: _tenant("suspended", "tenant suspended"),
    Tenant.Reinstated: _tenant("reinstated", "tenant reinstated"),
    Tenant.JurisdictionSet: lambda e: (
        "tenant.jurisdiction_set",
        "tenant",
        e.originator_id,
        f"jurisdiction set to {e.jurisdiction} (activity records' retention)",
    ),
    ActivityRetention.Ended: lambda e: (
        "retention.activity_ended",
        "tenant",
        e.tenant_id,
        f"activity records up to fiscal year {e.fiscal_year} past their retention "
        f"({e.jurisdiction}): purged from the read models",
    ),
    Tenant.AdminAppointed: lambda e: ("tenant.admin_appointed", "user", e.user_id, "appointed admin"),
    Tenant.AdminSteppedDown: lambda e: ("tenant.admin_stepped_down", "user", e.user_id, "no longer admin"),
    User.Joined: _user("joined", lambda e: f"joined as {e.role}" + (" by invite" if e.invite_id else "")),
    User.RoleChanged: _user("role_changed", lambda e: f"role changed to {e.role}"),
    User.Suspended: _user("suspended", lambda e: "user suspended"),
    User.Reinstated: _user("reinstated", lambda e: "user reinstated"),
    User.Removed: _user("removed", lambda e: "user removed"),
    Invite.Issued: _object("invite", "invite", "issued", lambda e: f"invite as {e.role} for user {e.user_id}"),
    Invite.Accepted: _object("invite", "invite", "accepted", lambda e: f"accepted by user {e.user_id}"),
    Invite.Revoked: _object("invite", "invite", "revoked", lambda e: "invite revoked"),
    ApiKey.Issued: _object("api_key", "api_key", "issued", _scopes),
    ApiKey.Revoked: _object("api_key", "api_key", "revoked", lambda e: "key revoked"),
    PairingKey.Issued: _object("pairing_key", "pairing_key", "issued", lambda e: f"pairing key {e.prefix}… issued"),
    PairingKey.Redeemed: _object("pairing_key", "pairing_key", "redeemed", lambda e: f"redeemed by agent {e.agent_id}"),
    PairingKey.Revoked: _object("pairing_key", "pairing_key", "revoked", lambda e: "pairing key revoked"),
    Agent.Paired: _object("agent", "agent", "paired", lambda e: f"agent paired as NATS user {e.nats_user}"),
    Agent.Revoked: _object("agent", "agent", "revoked", lambda e: "agent revoked"),
    RejectionTally.Counted: lambda e: ("usage.refusals_counted", "tenant", e.tenant_id, _refusals(e)),
    ApiKey.Suspended: _object(
        "api_key", "api_key", "suspended", lambda e: f"key suspended by the operator: {e.reason_code}"
    ),
    ApiKey.Reinstated: _object("api_key", "api_key", "reinstated", lambda e: "key reinstated"),
    Suspension.Imposed: lambda e: (
        "suspension.imposed",
        e.subject_kind,
        e.subject_id,
        f"{e.subject_kind} suspended by the operator: {e.reason_code}",
    ),
    Suspension.Lifted: _object("suspension", "suspension", "lifted", lambda e: "suspension lifted"),
    Suspension.AppealWindowClosed: _object(
        "suspension", "suspension", "appeal_window_closed", lambda e: "appeal window closed"
    ),
    Appeal.Filed: _object("appeal", "appeal", "filed", lambda e: f"appeal filed against suspension {e.suspension_id}"),
    Appeal.Decided: _object("appeal", "appeal", "decided", lambda e: f"appeal decided: {e.outcome}"),
    CreditLedger.LotPurchased: _object(
        "credits", "credit_lot", "purchased", lambda e: f"{e.amount_cents} cents bought"
    ),
    CreditLedger.LotExpired: _object(
        "credits", "credit_lot", "expired", lambda e: f"{e.amount_micro} micro-cents expired"
    ),
    CreditLedger.LotRefunded: _object(
        "credits", "credit_lot", "refunded", lambda e: f"{e.amount_cents} cents refunded"
    ),
    CreditLedger.Forfeited: _object(
        "credits", "credit_ledger", "forfeited", lambda e: f"{e.amount_micro} micro-cents forfeited"
    ),
    CreditLedger.BillingModeSet: _object(
        "credits", "credit_ledger", "billing_mode_set", lambda e: f"billing mode {e.mode}"
    ),
    CreditLedger.Opened: _object("credits", "credit_ledger", "opened", lambda e: "credit ledger opened"),
    AuditExport.Made: _object(
        "audit", "audit_export", "exported", lambda e: f"audit log exported as {e.format}: {e.filters}"
    ),
    ModelLicence.Accepted: _object("licence", "model_licence", "accepted", lambda e: f"{e.key} accepted: {e.licence}"),
    ModelLicence.Withdrawn: _object("licence", "model_licence", "withdrawn", lambda e: "licence withdrawn"),
    ModelLicence.Reaccepted: _object("licence", "model_licence", "accepted", lambda e: f"accepted again: {e.licence}"),
    TermsAnswer.Accepted: _object(
        "terms", "terms", "accepted", lambda e: f"{e.document}-{e.version} accepted ({e.how.replace('_', ' ')})"
    ),
    TermsAnswer.Rejected: _object(
        "terms",
        "terms",
        "rejected",
        lambda e: f"{e.document}-{e.version} rejected; refund due {e.refund_due_cents} {e.currency} cents",
    ),
    ApiKey.SharingSuspected: _object(
        "api_key",
        "api_key",
        "sharing_suspected",
        lambda e: (
            f"used from {e.network_count} networks and {e.user_agent_count} programs within {e.window_s} s"
            + ("; key suspended" if e.suspended else "")
        ),
    ),
    SharingPolicy.Chosen: lambda e: ("tenant.key_sharing_policy", "tenant", e.tenant_id, _sharing_policy(e)),
    SharingPolicy.Changed: lambda e: ("tenant.key_sharing_policy", "tenant", e.tenant_id, _sharing_policy(e)),
    FeatureOptIn.OptedIn: _object(
        "feature", "feature", "turned_on", lambda e: f"{e.feature} turned on" + (" (beta)" if e.beta else "")
    ),
    FeatureOptIn.OptedInAgain: _object("feature", "feature", "turned_on", lambda e: "turned on again"),
    FeatureOptIn.OptedOut: _object("feature", "feature", "turned_off", lambda e: "turned off"),
}
DESCRIBE.update(BILLING_DESCRIBE)  # billing (issue 15): projections/audit_billing.py


def entry_for(event: Any) -> AuditEntry | None:
    """The audit row of a domain event; None for usage records (aggregated, see ``is_usage``), per-request
    debits, and events of no tenant (the operator's tokens, publications, the price book): those stay in
    the integrity ledger and replay, in no tenant's audit log."""
    if is_usage(event) or isinstance(event, NOT_ROWS):
        return None
    tenant_id = event.originator_id if isinstance(event, Tenant.Registered) else getattr(event, "tenant_id", None)
    if tenant_id is None:
        return None
    describe = DESCRIBE.get(type(event), _undescribed)
    action, subject_kind, subject_id, summary = describe(event)
    return AuditEntry(tenant_id, event.timestamp, event.actor, action, subject_kind, subject_id, summary,
                      event.request_id)  # fmt: skip


def _undescribed(event: Any) -> tuple[str, str, UUID, str]:
    """An event no one described yet still gets its row: an audit log never leaves one out."""
    aggregate, name = type(event).__qualname__.split(".")[-2:]
    kind = _snake(aggregate)
    return f"{kind}.{_snake(name)}", kind, event.originator_id, ""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def is_usage(event: Any) -> bool:
    """Usage records appear as hourly aggregates per key and model, not one row each."""
    return isinstance(event, UsageRecord.Recorded)
