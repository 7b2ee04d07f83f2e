"""Acceptance by continued use (terms §18): the first use after new terms take effect records acceptance.

Checked on every authenticated request of both APIs, from memory: one integer comparison while the
tenant has accepted the terms in force. The recording itself runs on one background thread, once per
tenant and version in this process; the domain makes it idempotent across processes (one answer per
tenant and version). Only changes are accepted this way: nothing is recorded while the first version is in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from uuid import UUID

from domain.errors import DomainError
from legal.documents import LegalDocument, in_force
from projections.directory import TenantView

log = logging.getLogger(__name__)
Record = Callable[[UUID, str, str], object]  # (tenant id, document ref, actor) -> records the acceptance


class ContinuedUse:
    """Called by the authenticator with each request's tenant and actor; records acceptance when due."""

    def __init__(self, documents: Sequence[LegalDocument], clock: Callable[[], datetime], record: Record) -> None:
        self._documents = tuple(d for d in documents if d.kind == "terms")
        self._clock = clock
        self._record = record
        self._version = 0
        self._ref = ""
        self._valid_until = 0.0  # the next version's effective instant (unix s): the cache holds until then
        self._done: set[tuple[UUID, int]] = set()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._refresh()

    def __call__(self, tenant: TenantView, actor: str) -> None:
        """One request of ``tenant`` by ``actor``: nothing unless it has not accepted the terms in force."""
        if tenant.terms_version >= self._version and self._clock().timestamp() < self._valid_until:
            return
        self._refresh()
        if tenant.terms_version >= self._version or not self._ref:
            return
        key = (tenant.id, self._version)
        with self._lock:
            if key in self._done or self._closed:
                return
            self._done.add(key)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="terms-use")
            self._executor.submit(self._accept, tenant.id, self._ref, actor)

    def close(self) -> None:
        """Finish what was queued; record nothing after."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._closed = True
        if executor is not None:
            executor.shutdown(wait=True)

    def _refresh(self) -> None:
        now = self._clock()
        current = in_force(self._documents, "terms", now)
        # Only a CHANGE is accepted by use (terms §18): the first version is accepted at signup, or by the
        # operator's contract for a tenant it created, so while version 1 is in force nothing is recorded.
        due = current is not None and current.version > 1
        self._version, self._ref = (current.version, current.ref) if due and current else (0, "")
        later = [d.effective_at for d in self._documents if d.effective_at > now]
        self._valid_until = min(later).timestamp() if later else float("inf")

    def _accept(self, tenant_id: UUID, ref: str, actor: str) -> None:
        try:
            self._record(tenant_id, ref, actor)
        except DomainError as refused:  # already answered (another process, or a rejection): nothing to do
            log.debug("continued use of %s by tenant %s not recorded: %s", ref, tenant_id, type(refused).__name__)
        except Exception as exc:  # the next request of the tenant tries again
            log.warning("could not record acceptance of %s by use (%s)", ref, type(exc).__name__)
            with self._lock:
                self._done.discard((tenant_id, int(ref.rsplit("-", 1)[1])))
