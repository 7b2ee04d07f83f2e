"""Usage folded per key, model and hour: counting by the stored ids and hour, checked once per bucket,
equals counting record by record, whatever the records' encoding (the fallbacks included)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import audit_rows
from projections.usage_view import MAX_RECORD_VALUE

TENANTS = [uuid.UUID(int=n * 7919 + 1) for n in range(3)]
KEYS = [uuid.UUID(int=n * 104729 + 5) for n in range(4)]
START = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)


@dataclass
class Record:
    notification_id: int
    state: bytes
    event: Any
    topic: str = ""


def _record(n: int, tenant: int, key: int, minutes: int, offset: int, spelling: str, tokens: int) -> Record:
    moment = START + timedelta(minutes=minutes)
    tenant_id, key_id = TENANTS[tenant], KEYS[key]
    spell = {"hex": lambda u: u.hex, "upper": lambda u: u.hex.upper(), "dashed": str}[spelling]
    stamp = moment.astimezone(timezone(timedelta(minutes=offset))).isoformat()
    state = {"timestamp": {"_type_": "datetime_iso", "_data_": stamp},
             "tenant_id": {"_type_": "uuid_hex", "_data_": spell(tenant_id)},
             "key_id": {"_type_": "uuid_hex", "_data_": spell(key_id)}, "model": f"m{key % 2}",
             "prompt_tokens": tokens, "completion_tokens": 3}  # fmt: skip
    event = SimpleNamespace(tenant_id=tenant_id, key_id=key_id, timestamp=moment, model=f"m{key % 2}",
                            prompt_tokens=tokens, completion_tokens=3)  # fmt: skip
    raw = b"not json" if spelling == "dashed" and tokens % 3 == 0 else json.dumps(state).encode()
    return Record(n, raw, event)


one = st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 300), st.sampled_from([0, 0, 0, 60, -330]),
                st.sampled_from(["hex", "hex", "hex", "upper", "dashed"]),
                st.sampled_from([5, 7, 1000, MAX_RECORD_VALUE + 1]))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(one, max_size=40))
def test_folding_by_stored_values_equals_folding_record_by_record(draws: list[tuple[Any, ...]]) -> None:
    records = [_record(n + 1, *draw) for n, draw in enumerate(draws)]
    expected: dict[Any, Any] = {}
    for record in records:
        audit_rows._count(expected, record)  # type: ignore[arg-type]
    folded = audit_rows._fold(records)  # type: ignore[arg-type]
    assert {k: asdict(b) for k, b in folded.items()} == {k: asdict(b) for k, b in expected.items()}
    assert sum(b.requests for b in folded.values()) == len(records)
