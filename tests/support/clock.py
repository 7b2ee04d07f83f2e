"""An injectable clock that tests move forward by hand (never sleep for days)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ManualClock:
    """Returns a fixed instant until advanced."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move time forward, e.g. ``advance(days=7, seconds=1)``."""
        self.now += timedelta(**delta)
