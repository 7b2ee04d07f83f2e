"""What every tracked SQL read model does first in its write transaction: lock its position and check it."""

from __future__ import annotations

from typing import Any

from psycopg.sql import SQL, Composable


def check_locked_position(
    curs: Any, tracking_table: Composable, name: str, expected: int, stale: type[Exception]
) -> None:
    """Lock the read model's tracking row (PostgreSQL) and raise ``stale`` unless it stands at ``expected``.

    The row exists from the table's creation, so ``FOR UPDATE`` always has something to lock: two
    runners racing serialise here, and the loser re-reads its position instead of applying twice.
    """
    query = SQL("SELECT notification_id FROM {} WHERE application_name = %s FOR UPDATE").format(tracking_table)
    curs.execute(query, (name,))
    found = curs.fetchone()
    if (found["notification_id"] if found else 0) != expected:
        raise stale
