"""A separate API-like process running one slow reaction on PostgreSQL (for the two-process test).

``python -m tests.projections.reaction_worker DSN SCHEMA VAR_DIR LOG UNTIL``: handles invites until
its handler's position reaches UNTIL, writing ``start|end PID POSITION MONOTONIC_NS`` lines to LOG.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from eventsourcing.utils import get_topic

from api.services import build_services
from api.settings import load_settings
from api.stores import reaction_runner
from domain.context import SYSTEM, Ctx
from domain.invite import Invite

NAME = "test-slow-pair-on-invite"


class SlowPairOnInvite:
    """Each invite makes its tenant a pairing key, slowly, logging when it starts and ends."""

    name = NAME
    topics = (get_topic(Invite.Issued),)

    def __init__(self, app: Any, log_path: str) -> None:
        self.app, self.log_path = app, log_path

    def _log(self, what: str, position: int) -> None:
        with open(self.log_path, "a") as log:
            log.write(f"{what} {os.getpid()} {position} {time.monotonic_ns()}\n")

    def handle(self, event: Any, position: int) -> None:
        self._log("start", position)
        self.app.issue_pairing_key(Ctx(actor=SYSTEM, tenant_id=event.tenant_id, request_id=f"slow-{position}"))
        time.sleep(0.1)
        self._log("end", position)


def main(dsn: str, schema: str, var_dir: str, log_path: str, until: int) -> None:
    settings = load_settings(
        {}, persistence="postgres", postgres_dsn=dsn, postgres_schema=schema, var_dir=var_dir, inference=False
    )
    services = build_services(settings, start_runner=False)
    runner = reaction_runner(settings, services.app)
    runner.batch = 1
    runner.add(SlowPairOnInvite(services.app, log_path))
    deadline = time.monotonic() + 60
    while runner.position(NAME) < until and time.monotonic() < deadline:
        runner.run_once()
        time.sleep(0.02)
    runner.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
