"""The data lifecycle's windows and retention periods, as pure rules of our terms and the law.

Every function takes ``now`` (or the instant a window starts) as an argument; nothing reads a clock.
A window is due at its end instant exactly: ``is_due(due_at, now)`` is ``now >= due_at``, so a
sweeper that runs at any time fires each due item once and never a second early.

Sources (confirm with counsel):

- LibrePartner terms: "Accounts are permanently deleted 30 days after the deletion request, during
  which time you may restore your account" and "You may request deletion of your data".
- OwnLLM terms §11: "On request, we provide a data export and delete tenant data within 30 days of
  contract termination, except where retention is legally required".
- GDPR Art. 17 (erasure), Art. 17(3)(b) (retention required by law survives erasure), Art. 20
  (a structured, commonly used, machine-readable export).
- Norway, bokføringsloven §13: primary accounting records 5 years after the end of the financial year.
- France, Code de commerce L123-22: accounting records 10 years.

The retention table here covers ACTIVITY records (audit events, usage counts). Billing records'
retention is the billing module's (``policies/retention.py`` where that branch is merged); this
module keeps its own small table so that it stands alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# LibrePartner terms: deletion 30 days after the request, restorable meanwhile.
DELETION_WINDOW = timedelta(days=30)
# OwnLLM terms §11: tenant data deleted within 30 days of contract termination.
TERMINATION_WINDOW = timedelta(days=30)
# GDPR Art. 20 export: a download link lives 24 hours, then the file is deleted.
EXPORT_LINK_LIFETIME = timedelta(hours=24)

# Years activity records are kept after the end of the financial year they belong to.
DEFAULT_RETENTION_YEARS = 5  # Norway, bokføringsloven §13 (and our default everywhere else)
RETENTION_YEARS: dict[str, int] = {
    "NO": 5,  # bokføringsloven §13
    "FR": 10,  # Code de commerce L123-22
}


def is_due(due_at: datetime, now: datetime) -> bool:
    """A window ending at ``due_at`` has ended at ``now`` (never a second early)."""
    return now >= due_at


def deletion_due_at(requested_at: datetime) -> datetime:
    """When an account whose deletion was requested at ``requested_at`` is erased (LibrePartner terms)."""
    return requested_at + DELETION_WINDOW


def termination_due_at(terminated_at: datetime) -> datetime:
    """The latest instant a terminated tenant's data may still exist (OwnLLM terms §11)."""
    return terminated_at + TERMINATION_WINDOW


def restorable(due_at: datetime, now: datetime) -> bool:
    """A requested deletion can still be cancelled (the account restored) at ``now``."""
    return not is_due(due_at, now)


def export_expires_at(completed_at: datetime) -> datetime:
    """When an export's download link stops working and its file is deleted."""
    return completed_at + EXPORT_LINK_LIFETIME


def export_expired(completed_at: datetime, now: datetime) -> bool:
    """The export's link has expired at ``now``."""
    return is_due(export_expires_at(completed_at), now)


def retention_years(jurisdiction: str) -> int:
    """Years activity records are kept in ``jurisdiction`` (ISO 3166 alpha-2; default 5)."""
    return RETENTION_YEARS.get(jurisdiction.strip().upper(), DEFAULT_RETENTION_YEARS)


def retention_ends_at(recorded_at: datetime, jurisdiction: str) -> datetime:
    """When a record of ``recorded_at`` may be deleted: N years after the end of its financial year.

    The financial year is the calendar year (UTC); it ends at 1 January of the next year, 00:00 UTC.
    """
    year_end = datetime(recorded_at.astimezone(UTC).year + 1, 1, 1, tzinfo=UTC)
    return year_end.replace(year=year_end.year + retention_years(jurisdiction))


def retention_ended(recorded_at: datetime, jurisdiction: str, now: datetime) -> bool:
    """The record's legal retention is over at ``now`` (Art. 17(3)(b) no longer keeps it)."""
    return is_due(retention_ends_at(recorded_at, jurisdiction), now)
