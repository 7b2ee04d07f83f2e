"""The terms a signup accepts in tests: whichever version is in force today (not a hard-coded one)."""

from __future__ import annotations

from datetime import UTC, datetime

from legal.documents import bundled, in_force


def terms_in_force() -> str:
    """The ref (``terms-N``) of the terms in force now."""
    current = in_force(bundled(), "terms", datetime.now(UTC))
    assert current is not None
    return current.ref


TERMS = terms_in_force()
