"""Where a stored event goes in the integrity ledger, read from its stored bytes: its tenant and time.

The ledger needs two fields of every event (the tenant, whose tree it joins, and the time, which
exports select by); decoding every event through the application's mapper to get them was most of
the ledger's cost. :func:`locate` reads them from the stored JSON with msgspec, and only when they
are stored exactly as the mapper would decode them into what :func:`~projections.integrity.ledger.tenant_of_event`
reads (``tenant_id`` a tagged ``uuid_hex``, ``timestamp`` a tagged ``datetime_iso``, no upcasting
pending); anything else answers None and the ledger decodes the event as before.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from projections.integrity.ledger_rows import StoredRecord


class _Tagged(msgspec.Struct, forbid_unknown_fields=True):
    type: str = msgspec.field(name="_type_")
    data: str = msgspec.field(name="_data_")


class _Placed(msgspec.Struct):
    timestamp: _Tagged | None = None
    tenant_id: _Tagged | None = None
    class_version: int | None = None


_read = msgspec.json.Decoder(_Placed).decode
_tenant_keys: dict[str, str] = {}  # stored hex -> the tree key (str of the UUID); tenants are few


def locate(record: StoredRecord) -> tuple[str | None, datetime | None] | None:
    """(tenant key, time) of a stored event as the ledger keys it, or None when its bytes say otherwise."""
    if not record.state.startswith(b"{"):  # not the mapper's JSON object (as it writes it): no exception raised
        return None
    try:
        placed = _read(record.state)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    tenant, moment = placed.tenant_id, placed.timestamp
    if (tenant is None or moment is None or placed.class_version is not None or tenant.type != "uuid_hex"
            or moment.type != "datetime_iso"):  # fmt: skip
        return None
    key = _tenant_keys.get(tenant.data)
    try:
        if key is None:
            key = str(UUID(tenant.data))
            if len(_tenant_keys) < 100_000:
                _tenant_keys[tenant.data] = key
        return key, datetime.fromisoformat(moment.data)
    except ValueError:
        return None
