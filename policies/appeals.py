"""Appeals against enforcement: a suspended party may appeal within 30 days of the action.

Source: the LibrePartner terms ("the suspended party may appeal within 30 days of the action") and
OwnLLM terms §8. Pure rules taking ``now``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

APPEAL_WINDOW = timedelta(days=30)


def appeal_deadline(action_at: datetime) -> datetime:
    """The last instant (exclusive) an appeal against an action taken at ``action_at`` is accepted."""
    return action_at + APPEAL_WINDOW


def may_appeal(action_at: datetime, now: datetime) -> bool:
    """Whether an appeal filed at ``now`` is in time: from the action up to, not including, the deadline."""
    return action_at <= now < appeal_deadline(action_at)
