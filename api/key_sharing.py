"""Turns the proxy's key-sharing sightings into recorded suspicions, off the event loop, one at a time."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

from api.proxy.sharing import Sighting
from api.services import Services
from domain.errors import DomainError

log = logging.getLogger(__name__)


class SharingReporter:
    """``report`` from the event loop (never blocks); the command runs on one background thread."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="key-sharing")
        self._lock = threading.Lock()
        self._closed = False

    def report(self, sighting: Sighting) -> None:
        """Record a suspected shared key (counts only: the networks stay in the detector's memory)."""
        with self._lock:
            if not self._closed:
                self._executor.submit(self._record, sighting)

    def close(self) -> None:
        """Record what was reported, then nothing more."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True)

    def _record(self, sighting: Sighting) -> None:
        window_s = int(self.services.settings.key_sharing_window_s)
        try:
            suspended = self.services.command(
                self.services.app.report_key_sharing, sighting.key_id, len(sighting.networks), sighting.user_agents,
                window_s, f"sharing-{uuid4()}",
            )  # fmt: skip
        except DomainError as refused:  # revoked meanwhile: nothing to suspect
            log.info("key-sharing report for %s not recorded: %s", sighting.key_id, type(refused).__name__)
            return
        except Exception as exc:
            log.warning("key-sharing report for %s failed (%s)", sighting.key_id, type(exc).__name__)
            return
        log.warning("key %s suspected shared (%d networks)%s", sighting.key_id, len(sighting.networks),
                    "; suspended" if suspended else "")  # fmt: skip
