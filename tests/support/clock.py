"""An injectable clock that tests move forward by hand (never sleep for days)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta


def default_start() -> datetime:
    """Now, or the instant ``TEST_CLOCK_START`` names (ISO 8601): a failure that depends on the date replays."""
    named = os.environ.get("TEST_CLOCK_START")
    return datetime.fromisoformat(named).astimezone(UTC) if named else datetime.now(UTC)


class ManualClock:
    """Returns a fixed instant until advanced."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or default_start()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move time forward, e.g. ``advance(days=7, seconds=1)``."""
        self.now += timedelta(**delta)
