"""The data lifecycle's windows (deletion, termination, export links), as pure rules of our terms and the law.

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

Retention periods (how long records are kept, per jurisdiction) are ``policies/retention.py``'s:
one table for billing and activity records.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# LibrePartner terms: deletion 30 days after the request, restorable meanwhile.
DELETION_WINDOW = timedelta(days=30)
# OwnLLM terms §11: tenant data deleted within 30 days of contract termination.
TERMINATION_WINDOW = timedelta(days=30)
# GDPR Art. 20 export: a download link lives 24 hours, then the file is deleted.
EXPORT_LINK_LIFETIME = timedelta(hours=24)


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
