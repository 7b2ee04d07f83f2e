"""The fast paths of the tracked readers give exactly what the slow ones give: bulk Merkle appends,
the range read of the log, msgspec decoding of stored events, the ledger's tenant and time from bytes."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import Notification
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services, build_services
from api.settings import Settings
from projections.fast_uuid import uuid_from_bytes, uuid_from_hex
from projections.integrity.ledger import tenant_of_event
from projections.integrity.merkle import MemoryStore, MerkleTree, leaf_hash
from projections.integrity.tiles import TileStore, edge_tiles
from projections.ledger_records import locate
from projections.log import NotificationLog, Recorded
from projections.log_decode import fast_decode
from tests.projections.test_audit_log import Story
from tests.support.clock import ManualClock


@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(st.integers(0, 700), min_size=1, max_size=8), tiled=st.booleans(), reopen=st.booleans())
def test_appending_in_bulk_builds_the_same_tree_as_one_leaf_at_a_time(
    chunks: list[int], tiled: bool, reopen: bool
) -> None:
    leaves = [leaf_hash(b"leaf %d" % i) for i in range(sum(chunks))]
    one_by_one = MerkleTree(MemoryStore())
    for digest in leaves:
        one_by_one.append_hash(digest)
    rows: dict[tuple[int, int], bytes] = {}
    store: Any = TileStore(0) if tiled else MemoryStore()
    bulk = MerkleTree(store)
    for count in chunks:
        assert bulk.extend_hashes(leaves[bulk.size : bulk.size + count]) == bulk.size - count
        assert bulk.root() == one_by_one.root(bulk.size)
        if tiled:
            rows.update(((level, index), hashes) for level, index, hashes in store.take_dirty())
            if reopen:  # as the ledger does after each committed batch: a fresh tree over the edge tiles
                store = TileStore(bulk.size, {key: rows[key] for key in edge_tiles(bulk.size)})
                bulk = MerkleTree(store)
    assert bulk.size == len(leaves)
    if tiled:
        whole = TileStore(len(leaves), rows)  # every tile as stored: the same nodes as the one-by-one tree's
        assert all(MerkleTree(whole).inclusion_proof(i) == one_by_one.inclusion_proof(i) for i in range(len(leaves)))
    else:
        assert all(bulk.inclusion_proof(i) == one_by_one.inclusion_proof(i) for i in range(len(leaves)))


@pytest.fixture
def history(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Services]:
    """A store with every kind of tenancy event (sealed names and e-mails among them) and usage records."""
    services = build_services(make_settings(), start_runner=False, clock=clock)
    for n in range(2):
        story = Story(services, clock)
        for kind in ["join", "key", "usage", "role", "hour", "revoke", "usage", "join", "key", "usage"]:
            story.act(kind, n)
    yield services
    services.close()


def _stored(services: Services) -> list[Notification]:
    return list(services.app.recorder.select_notifications(1, 10_000))


def test_the_fast_decode_gives_what_the_mapper_gives(history: Services) -> None:
    mapper = history.app.mapper
    decode = fast_decode(mapper.to_domain_event)
    assert decode is not mapper.to_domain_event
    stored = _stored(history)
    assert len({n.topic for n in stored}) >= 8
    for notification in stored:
        fast, slow = decode(notification), mapper.to_domain_event(notification)
        assert type(fast) is type(slow) and vars(fast) == vars(slow), notification.topic
        recorded = Recorded(notification, decode).event  # by its parts, no Notification made
        assert type(recorded) is type(slow) and vars(recorded) == vars(slow), notification.topic


def test_the_fast_decode_leaves_what_it_cannot_read_to_the_mapper(history: Services) -> None:
    seen: list[str] = []
    mapper = history.app.mapper

    def slow(n: Notification) -> Any:
        seen.append(n.topic)
        return mapper.to_domain_event(n)

    slow.__self__ = mapper  # type: ignore[attr-defined]  # not the mapper's own method: left alone
    assert fast_decode(slow) is slow
    sealed = next(n for n in _stored(history) if b'"sealed"' in n.state)
    decode = fast_decode(mapper.to_domain_event)
    calls: list[Notification] = []
    decode.decode = lambda n: calls.append(n) or mapper.to_domain_event(n)  # type: ignore[attr-defined]
    event = decode(sealed)
    assert calls == [sealed] and vars(event) == vars(mapper.to_domain_event(sealed))
    event = Recorded(sealed, decode).event  # the mapper gets the notification made again from the parts
    assert calls == [sealed, sealed] and vars(event) == vars(mapper.to_domain_event(sealed))
    odd_states = (b"not json", b'{"a": {"_type_": "unknown", "_data_": "x"}}', b'{"timestamp": NaN}',
                  b'{"class_version": 2}', b'{"t": {"_type_": "uuid_hex", "_data_": "not a uuid"}}')  # fmt: skip
    for state in odd_states:
        odd = Notification(id=1, originator_id=uuid.uuid4(), originator_version=1, topic=sealed.topic, state=state)
        assert _outcome(decode, odd) == _outcome(mapper.to_domain_event, odd), state


def _outcome(decode: Callable[[Notification], Any], stored: Notification) -> Any:
    """The event's type and state as text, or the error's type."""
    try:
        event = decode(stored)
    except Exception as error:
        return type(error)
    return type(event), repr(sorted(vars(event).items()))


def test_the_ledger_reads_tenant_and_time_from_the_bytes_as_from_the_event(history: Services) -> None:
    mapper = history.app.mapper
    located = 0
    for notification in _stored(history):
        record = Recorded(notification, mapper.to_domain_event)
        event = record.event
        tenant = tenant_of_event(event)
        found = locate(record)
        if found is not None:
            located += 1
            assert found == (None if tenant is None else str(tenant), event.timestamp)
    # decoded instead: registrations (no tenant_id, the tenant is the aggregate) and events to upcast
    plain = [n for n in _stored(history) if b'"tenant_id"' in n.state and b'"class_version"' not in n.state]
    assert located == len(plain) >= 20
    for state in (b"\x00random", b'{"tenant_id": null}', b'["a"]', b"{not json"):
        odd = Notification(id=1, originator_id=uuid.uuid4(), originator_version=1, topic="a:B", state=state)
        assert locate(Recorded(odd, mapper.to_domain_event)) is None


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(after=st.integers(0, 60), span=st.integers(0, 60), limit=st.integers(1, 30))
def test_reading_every_topic_by_ranges_is_the_library_read(
    history: Services, after: int, span: int, limit: int
) -> None:
    log, mapper = NotificationLog(history.app.recorder), history.app.mapper
    stop = min(after + span, log.head())
    records, through = log.records(after, stop, (), limit, mapper.to_domain_event)
    expected = [n for n in _stored(history) if after < n.id <= through]
    assert [(r.notification_id, r.originator_id, r.originator_version, r.topic, r.state) for r in records] == [
        (n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in expected
    ]
    assert after <= through <= max(after, stop) and (through == max(after, stop) or len(records) >= limit)
    assert all(vars(r.event) == vars(mapper.to_domain_event(n)) for r, n in zip(records, expected, strict=True))


ODD_TAGS = [{"_type_": "uuid_hex", "_data_": "not a uuid"}, {"_type_": "unknown", "_data_": "x"},
            {"_type_": "uuid_hex", "_data_": 7}, {"_type_": "uuid_hex"}]  # fmt: skip
_HEX = st.text("0123456789abcdefABCDEF", min_size=32, max_size=32)
_TAGGED = st.one_of(
    _HEX.map(lambda h: {"_type_": "uuid_hex", "_data_": h}),
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda t: {"_type_": "datetime_iso", "_data_": t.isoformat()}),
    st.sampled_from(ODD_TAGS),
)
_VALUE = st.recursive(
    st.one_of(st.text('ab{}[]"\\', max_size=6), st.integers(-3, 3), st.none(), st.booleans(), _TAGGED),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("xyz"), inner, max_size=2)),
    max_leaves=6,
)
_STATE = st.dictionaries(st.sampled_from(["timestamp", "tenant_id", "actor", "filters", "n", "_type_"]), _VALUE,
                         max_size=5)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(states=st.lists(_STATE, min_size=1, max_size=6))
def test_a_topic_s_learned_shape_never_changes_what_the_mapper_gives(make_mapper: Any, states: list[Any]) -> None:
    """One decoder sees several states of one topic: whatever shape it learned from the earlier ones (braces
    and brackets in strings, nested or odd tags, fields missing or added), each decodes as the mapper does."""
    decode = fast_decode(make_mapper.to_domain_event)
    topic = "domain.audit_export:AuditExport.Made"
    for state in states:
        stored = json.dumps(state, separators=(",", ":")).encode()
        odd = Notification(id=1, originator_id=uuid.uuid4(), originator_version=1, topic=topic, state=stored)
        assert _outcome(decode, odd) == _outcome(make_mapper.to_domain_event, odd), stored


@pytest.fixture(scope="module")
def make_mapper() -> Any:
    """eventsourcing's own mapper with the library's tags (the ones the application's transcoder has)."""
    return Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=14, max_size=18), text=st.one_of(_HEX, st.text(max_size=40), st.uuids().map(str)))
def test_fast_uuids_are_uuid_s_own(raw: bytes, text: str) -> None:
    assert _made(uuid_from_bytes, raw) == _made(lambda b: uuid.UUID(bytes=b), raw)
    assert _made(uuid_from_hex, text) == _made(uuid.UUID, text)
    made = uuid_from_hex(uuid.uuid4().hex)
    assert type(made) is uuid.UUID and made.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(made)) == made and hash(made) == hash(uuid.UUID(made.hex))


def _made(make: Callable[[Any], uuid.UUID], value: Any) -> Any:
    """The value made (with its int, text and hash), or the error's type."""
    try:
        made = make(value)
    except Exception as error:
        return type(error)
    return made, made.int, str(made), hash(made), made.version
