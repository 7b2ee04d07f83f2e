"""The integrity ledger for tenants and their auditors: the signed checkpoints to keep, and the public keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.guards import AnyRequest
from api.ledger_keys import public_keys
from api.pagination import DEFAULT_LIMIT, PAGE_HEADERS, Limit
from api.principal import Principal
from api.settings import Settings
from domain.permissions import Action
from projections.integrity.ledger import Ledger
from projections.integrity.ledger_rows import GLOBAL, CheckpointRow

AfterSize = Annotated[
    int, QueryParameter(ge=0, description="Only checkpoints cut after this global tree size (keyset cursor).")
]


class CheckpointOut(msgspec.Struct):
    """A signed checkpoint (a C2SP tlog-checkpoint signed note): keep it; later, verify the log extends it."""

    kind: Literal["global", "tenant"]
    origin: str
    size: int  # leaves of its tree
    global_size: int  # the global tree's size when it was cut (the keyset cursor)
    signed_at: datetime
    note: str  # the signed note, exactly as signed


class PublicKeysOut(msgspec.Struct):
    """The verifier keys (vkeys) of the ledger: the current one, then retired ones still accepted."""

    origin: str
    current: str
    retired: list[str]


def checkpoint_out(row: CheckpointRow) -> CheckpointOut:
    """A stored checkpoint as the API shows it."""
    return CheckpointOut(
        kind="global" if row.tree == GLOBAL else "tenant", origin=row.note.split("\n", 1)[0], size=row.size,
        global_size=row.global_size, signed_at=row.signed_at, note=row.note,
    )  # fmt: skip


class LedgerController(Controller):
    """Checkpoints are offered to every tenant so that it can hold them: the operator cannot rewrite what they hold."""

    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/checkpoints", operation_id="listAuditCheckpoints", opt={"action": Action.AUDIT_READ},
         response_headers=PAGE_HEADERS[:1], sync_to_thread=True)  # fmt: skip
    def checkpoints(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        ledger: NamedDependency[Ledger],
        after: AfterSize = 0,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Response[list[CheckpointOut]]:
        """The global checkpoints and the caller's tenant's own, oldest first, ``limit`` cuts per page."""
        rows = ledger.tables.checkpoints([GLOBAL, str(principal.tenant_id)], after, 2 * limit + 2)
        sizes = sorted({r.global_size for r in rows})
        page = [r for r in rows if r.global_size in sizes[:limit]]
        headers = {}
        if len(sizes) > limit:
            query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("after", "limit")]
            query += [("limit", str(limit)), ("after", str(sizes[limit - 1]))]
            headers["Link"] = f'<{request.url.with_replacements(query=urlencode(query))}>; rel="next"'
        return Response([checkpoint_out(r) for r in page], headers=headers)

    @get("/public-key", operation_id="auditPublicKey", sync_to_thread=False)
    def public_key(self, ledger: NamedDependency[Ledger], settings: NamedDependency[Settings]) -> PublicKeysOut:
        """The ledger's verifier keys (public: anyone may verify a checkpoint)."""
        assert ledger.signer is not None
        current, *retired = public_keys(ledger.signer, settings)
        return PublicKeysOut(origin=ledger.origin, current=current, retired=retired)
