"""Bundles exported from a real SQLite store by real commands: untouched they verify, every tampering is caught."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services, build_services
from api.settings import load_settings
from domain.context import SYSTEM, Ctx
from projections.integrity import bundle as bundles
from projections.integrity.export import build_bundle
from projections.integrity.ledger import Ledger
from projections.integrity.ledger_rows import GLOBAL
from projections.integrity.note_keys import Signer
from projections.integrity.notes import parse_note, sign_note
from projections.ledger_tables import stored_states
from tests.support.clock import ManualClock

Files = dict[str, bytes]
COUNTS = {"tried": 0, "detected": 0}


def _ledger(services: Services) -> Ledger:
    assert services.ledger is not None
    return services.ledger


def _story(
    services: Services, clock: ManualClock, slugs: list[str], rounds: int, salt: str = "", start: int = 0
) -> None:
    """Tenants sign up, issue keys, invite, and use models; time passes."""
    app = services.app
    for slug in slugs:
        if slug not in {t.slug for t in services.directory.tenants.values()}:
            services.command(app.signup, slug=slug, name=slug, admin_name="A", admin_email=f"a{salt}@t.example",
                             request_id="r")  # fmt: skip
    for turn in range(start, start + rounds):
        for slug in slugs:
            tenant = next(t for t in services.directory.tenants.values() if t.slug == slug)
            user = services.directory.tenant_users(tenant.id)[0]
            key = services.directory.tenant_keys(tenant.id)[0]
            ctx = Ctx(SYSTEM, tenant.id, f"r{turn}")
            if turn % 3 == 0:
                services.command(app.issue_api_key, ctx, user_id=user.id, name=f"k{turn}{salt}", scopes=["inference"])
            elif turn % 3 == 1:
                services.command(app.invite_user, ctx, email=f"u{turn}{salt}@t.example", role="member")
            app.record_usage(
                tenant_id=tenant.id, user_id=user.id, key_id=key.id, agent_id=None, model="m", endpoint="chat",
                stream=False, status="ok", prompt_tokens=turn, completion_tokens=1, ttft_ms=1, duration_ms=1,
                request_id=f"{salt}{slug}{turn}",
            )  # fmt: skip
        clock.advance(seconds=61)
        services.runner.catch_up()


def _export(services: Services, slug: str) -> Files:
    ledger = _ledger(services)
    tenant = next(str(t.id) for t in services.directory.tenants.values() if t.slug == slug)
    assert ledger.signer is not None
    with ledger.tables.reading() as snapshot:
        made = build_bundle(
            snapshot, lambda ids: stored_states(services.app.recorder, ids), ledger.origin, tenant,
            [ledger.signer.verifier.vkey],
        )  # fmt: skip
    return bundles.render(made)


def _own_checkpoints(services: Services, slug: str) -> list[str]:
    """What the tenant saved from ``GET /api/v1/audit/checkpoints`` at that moment."""
    tenant = next(str(t.id) for t in services.directory.tenants.values() if t.slug == slug)
    return [r.note for r in _ledger(services).tables.checkpoints([GLOBAL, tenant], 0, 10_000)]


@dataclass
class World:
    """Bundles of two tenants of one log, the keys, checkpoints tenant A pinned, and a rewritten log's bundle."""

    a: Files
    b: Files
    keys: list[str]
    pinned: list[str]
    rewritten: Files
    path: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("ledger")
    clock = ManualClock()
    config = {"var_dir": str(root / "var"), "inference": False, "checkpoint_every_events": 7}
    services = build_services(load_settings({}, **config), start_runner=False, clock=clock)
    _story(services, clock, ["acme", "beta"], 4)
    _ledger(services).checkpoint()
    pinned = _own_checkpoints(services, "acme")
    _story(services, clock, ["acme", "beta"], 5, start=4)
    _ledger(services).checkpoint()
    a, b = _export(services, "acme"), _export(services, "beta")
    keys = [_ledger(services).signer.verifier.vkey]  # type: ignore[union-attr]
    services.close()
    # The operator rewrites history: the same tenants, other events, re-signed with the real key.
    other = root / "rewritten"
    (other / "secrets").mkdir(parents=True)
    shutil.copy(root / "var" / "secrets" / "ledger-signing-key", other / "secrets" / "ledger-signing-key")
    again = build_services(load_settings({}, **(config | {"var_dir": str(other)})), start_runner=False, clock=clock)
    _story(again, clock, ["acme", "beta"], 9, salt="x")
    _ledger(again).checkpoint()
    rewritten = _export(again, "acme")
    again.close()
    yield World(a, b, keys, pinned, rewritten, root)


def _verify(files: Files, world: World, pinned: list[str] | None = None) -> bundles.BundleReport:
    return bundles.verify_bundle(files, world.pinned if pinned is None else pinned, world.keys)


def _events(files: Files) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files["events.jsonl"].decode().splitlines()]


def _proofs(files: Files) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files["proofs.jsonl"].decode().splitlines()]


def _with(files: Files, events: list[dict[str, Any]], proofs: list[dict[str, Any]] | None = None) -> Files:
    changed = dict(files)
    changed["events.jsonl"] = "".join(json.dumps(e) + "\n" for e in events).encode()
    if proofs is not None:
        changed["proofs.jsonl"] = "".join(json.dumps(p) + "\n" for p in proofs).encode()
    return changed


def rehash(files: Files) -> Files:
    """What a careful forger does after editing: the manifest lists the new hashes."""
    manifest = json.loads(files[bundles.MANIFEST])
    manifest["files"] = {n: hashlib.sha256(c).hexdigest() for n, c in files.items() if n != bundles.MANIFEST}
    return files | {bundles.MANIFEST: json.dumps(manifest).encode()}


# --- the kinds of tampering -------------------------------------------------------------------------------------


def flip_byte(files: Files, world: World, i: int, j: int) -> Files:
    events = _events(files)
    e = events[i % len(events)]
    raw = bytearray(base64.b64decode(e["stored"]))
    raw[j % len(raw)] ^= 1 << (j % 8)
    e["stored"] = base64.b64encode(bytes(raw)).decode()
    return _with(files, events)


def delete_event(files: Files, world: World, i: int, j: int) -> Files:
    events, proofs = _events(files), _proofs(files)
    k = i % len(events)
    return _with(files, events[:k] + events[k + 1 :], proofs[:k] + proofs[k + 1 :])


def insert_event(files: Files, world: World, i: int, j: int) -> Files:
    events, proofs = _events(files), _proofs(files)
    k = i % len(events)
    fake = dict(events[k], stored=base64.b64encode(b'{"forged": %d}' % j).decode())
    return _with(files, [*events[: k + 1], fake, *events[k + 1 :]], [*proofs[: k + 1], proofs[k], *proofs[k + 1 :]])


def swap_events(files: Files, world: World, i: int, j: int) -> Files:
    events = _events(files)
    a, b = i % len(events), (i + 1 + j % (len(events) - 1)) % len(events)
    events[a]["stored"], events[b]["stored"] = events[b]["stored"], events[a]["stored"]
    return _with(files, events)


def truncate_tail(files: Files, world: World, i: int, j: int) -> Files:
    events, proofs = _events(files), _proofs(files)
    cut = len(events) - 1 - i % (len(events) - 1)
    return _with(files, events[:cut], proofs[:cut])


def other_tenants_event(files: Files, world: World, i: int, j: int) -> Files:
    """Event k replaced by one of tenant B's, with B's global proof for it (a valid proof of another event)."""
    events, proofs = _events(files), _proofs(files)
    theirs, their_proofs = _events(world.b), _proofs(world.b)
    k, m = i % len(events), j % len(theirs)
    events[k] = dict(events[k], leaf=theirs[m]["leaf"], stored=theirs[m]["stored"])
    proofs[k] = dict(proofs[k], **{"global": their_proofs[m]["global"]})
    return _with(files, events, proofs)


def _notes(files: Files) -> dict[str, list[str]]:
    return json.loads(files["checkpoints.json"])  # type: ignore[no-any-return]


def forge_checkpoint(files: Files, world: World, i: int, j: int) -> Files:
    """A checkpoint's size or root edited, its signature kept."""
    notes = _notes(files)
    tree = "global" if i % 2 else "tenant"
    k = j % len(notes[tree])
    lines = notes[tree][k].split("\n")
    lines[2] = base64.b64encode(bytes(32)).decode() if j % 3 else lines[2]
    lines[1] = str(int(lines[1]) + 1) if not j % 3 else lines[1]
    notes[tree][k] = "\n".join(lines)
    return files | {"checkpoints.json": json.dumps(notes).encode()}


STRANGER = Signer.from_seed("x", bytes(range(32)))


def unknown_key(files: Files, world: World, i: int, j: int) -> Files:
    """A checkpoint signed again by a key of the same name that nobody trusts (its real signature dropped)."""
    notes = _notes(files)
    tree = "global" if i % 2 else "tenant"
    k = j % len(notes[tree])
    note = parse_note(notes[tree][k])
    stranger = Signer(note.signatures[0].name, STRANGER.private_key)
    notes[tree][k] = sign_note(note.text, [stranger])
    return files | {"checkpoints.json": json.dumps(notes).encode()}


def edit_manifest(files: Files, world: World, i: int, j: int) -> Files:
    manifest = json.loads(files[bundles.MANIFEST])
    name = sorted(manifest["files"])[i % len(manifest["files"])]
    if j % 3 == 0:
        manifest["files"][name] = "0" * 64
    elif j % 3 == 1:
        manifest["tenant_id"] = str(uuid.UUID(int=j))
    else:
        del manifest["files"][name]
    return files | {bundles.MANIFEST: json.dumps(manifest).encode()}


def rewritten_history(files: Files, world: World, i: int, j: int) -> Files:
    """The operator's rewritten log, re-signed with the real key (caught by what the tenant pinned)."""
    return dict(world.rewritten)


KINDS: dict[str, Callable[[Files, World, int, int], Files]] = {
    f.__name__: f
    for f in (flip_byte, delete_event, insert_event, swap_events, truncate_tail, other_tenants_event,
              forge_checkpoint, unknown_key, edit_manifest, rewritten_history)
}  # fmt: skip
FORGER_REHASHES = {"edit_manifest": False}  # a forger who fixes the manifest after every other edit


def _detected(world: World, kind: str, i: int, j: int, fix_manifest: bool) -> bundles.BundleReport:
    files = KINDS[kind](dict(world.a), world, i, j)
    if fix_manifest and FORGER_REHASHES.get(kind, True):
        files = rehash(files)
    report = _verify(files, world)
    COUNTS["tried"] += 1
    COUNTS["detected"] += not report.ok
    return report


# --- tests ----------------------------------------------------------------------------------------------------------


def test_untouched_bundles_verify_with_pinned_checkpoints(world: World) -> None:
    for files in (world.a, world.b):
        report = _verify(files, world, pinned=[] if files is world.b else None)
        assert report.ok, report.lines()
        assert report.events_verified == report.events_total == report.tenant_size > 10
        assert f"{report.checkpoints_total}/{report.checkpoints_total} checkpoints valid" in report.lines()
    assert _verify(world.a, world).pinned_extended == len(world.pinned) > 2
    # the rewritten log verifies on its own: only what the tenant pinned can tell
    assert _verify(world.rewritten, world, pinned=[]).ok


def test_a_bundle_on_disk_verifies_and_one_edited_byte_names_its_position(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name, content in world.a.items():
        (folder / name).write_bytes(content)
    assert bundles.verify_bundle(folder, world.pinned, world.keys).ok
    events = _events(world.a)
    report = _verify(rehash(flip_byte(world.a, world, 3, 17)), world)
    assert not report.ok and report.first_bad == str(events[3]["leaf"])
    assert any(f"position {events[3]['leaf']}:" in line for line in report.lines())


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("fix_manifest", [False, True])
def test_every_kind_of_tampering_at_every_position_is_detected(world: World, kind: str, fix_manifest: bool) -> None:
    count = len(_events(world.a))
    for i in range(count):
        for j in (0, 1, 2, 7):
            report = _detected(world, kind, i, j, fix_manifest)
            assert not report.ok, (kind, i, j, report.lines())
            assert report.lines()[-1].startswith("FAILED")
        if kind == "rewritten_history":
            break


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(KINDS)), i=st.integers(0, 10_000), j=st.integers(0, 10_000), fix=st.booleans())
def test_tampering_anywhere_is_detected(world: World, kind: str, i: int, j: int, fix: bool) -> None:
    assert not _detected(world, kind, i, j, fix).ok


def test_specific_verdicts(world: World) -> None:
    deleted = _verify(rehash(delete_event(world.a, world, 4, 0)), world)
    assert any("tenant leaves missing from the bundle" in line for line in deleted.lines())
    assert deleted.first_bad == "tenant leaf 4"
    tail = _verify(rehash(truncate_tail(world.a, world, 0, 0)), world)
    assert any("missing" in line for line in tail.lines())
    rewritten = _verify(world.rewritten, world)
    assert any("pinned checkpoint" in line for line in rewritten.lines())
    unknown = _verify(unknown_key(world.a, world, 1, 0), world)
    assert any("no signature by a known key" in line for line in unknown.lines())
    manifest = _verify(edit_manifest(world.a, world, 0, 0), world)
    assert any(line.startswith("manifest:") for line in manifest.lines())


def test_report_the_counts() -> None:
    print(f"\ntampering: tried {COUNTS['tried']}, detected {COUNTS['detected']}")
    assert COUNTS["tried"] == COUNTS["detected"]
