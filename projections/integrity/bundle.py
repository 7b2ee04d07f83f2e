"""A tenant's audit bundle: its events as stored, their proofs in two trees, checkpoints, keys, a manifest.

A bundle is a directory of plain files an auditor can read and check with nothing but this package
(standard library and ``cryptography``; no database, no network, no other part of OwnLLM):

- ``events.jsonl``: one line per event of the tenant, ``{"leaf", "tenant_leaf", "notification_id",
  "stored"}``: its index in the global tree, in the tenant's tree, its place in the event store, and
  its bytes exactly as stored (base64; personal data sealed, so an erasure never changes them).
- ``proofs.jsonl``: per event, its inclusion proof in the global tree against the newest global
  checkpoint and in the tenant's tree against the newest tenant checkpoint.
- ``checkpoints.json``: the signed checkpoints (C2SP signed notes) of the global log and of the tenant's.
- ``consistency.json``: for every checkpoint, the consistency proof to the newest of its tree.
- ``keys.txt``: the verifier keys (current and retired), one vkey per line.
- ``manifest.json``: the format, the origin, the tenant, the time range exported, and the SHA-256 of
  every other file (a file edited, added or removed is named).

:func:`verify_bundle` prints like CloudTrail's validator (``N/M checkpoints valid``, ``K/K events
verified``) and names the first bad position. What it proves, and why the tenant tree is needed,
is in :mod:`projections.integrity.ledger`.

Cost: the bundle holds O(log n) hashes per event and per checkpoint, so verifying it costs
O((events + checkpoints) * log n), never the size of the whole log. An auditor who verified up to a
checkpoint and pinned it exports with ``--from`` later: the new bundle holds only the events since,
and the pinned checkpoint is proven extended by one consistency proof (O(log n)).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from projections.integrity.merkle import leaf_hash
from projections.integrity.notes import NoteError, parse_checkpoint, parse_note
from projections.integrity.verify import InclusionProof, Problem, Report, verify_log

FORMAT = "ownllm-audit-bundle/1"
MANIFEST = "manifest.json"
FILES = ("events.jsonl", "proofs.jsonl", "checkpoints.json", "consistency.json", "keys.txt")


class BundleError(ValueError):
    """A bundle that cannot be read at all."""


def tenant_origin(origin: str, tenant_id: str) -> str:
    """The origin line of a tenant's own tree: ``<origin>/tenant/<tenant id>``."""
    return f"{origin}/tenant/{tenant_id}"


def tenant_leaf_data(leaf: int, global_leaf_hash: bytes) -> bytes:
    """What a tenant tree's leaf holds: the event's 8-byte global leaf index, then its global leaf hash."""
    return leaf.to_bytes(8, "big") + global_leaf_hash


@dataclass(frozen=True, slots=True)
class BundleEvent:
    """One of the tenant's events as the bundle carries it."""

    leaf: int
    tenant_leaf: int
    notification_id: int
    stored: bytes


@dataclass
class Bundle:
    """Everything a tenant's auditor needs to verify, parsed."""

    origin: str
    tenant_id: str
    events: list[BundleEvent]
    global_proofs: list[InclusionProof]
    tenant_proofs: list[InclusionProof]
    global_checkpoints: list[str]
    tenant_checkpoints: list[str]
    global_consistency: dict[tuple[int, int], list[bytes]]
    tenant_consistency: dict[tuple[int, int], list[bytes]]
    keys: list[str]
    since: str | None = None
    until: str | None = None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise BundleError("expected base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise BundleError("not base64") from error


def _json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True) + "\n"


def _proof_out(proof: InclusionProof) -> dict[str, Any]:
    return {"index": proof.index, "tree_size": proof.tree_size, "hashes": [_b64(h) for h in proof.hashes]}


def _consistency_out(proofs: Mapping[tuple[int, int], Sequence[bytes]]) -> list[dict[str, Any]]:
    return [{"from": a, "to": b, "hashes": [_b64(h) for h in p]} for (a, b), p in sorted(proofs.items())]


def render(bundle: Bundle) -> dict[str, bytes]:
    """The bundle's files by name, the manifest with every other file's SHA-256 included."""
    events = "".join(
        _json_line({"leaf": e.leaf, "tenant_leaf": e.tenant_leaf, "notification_id": e.notification_id,
                    "stored": _b64(e.stored)})
        for e in bundle.events
    )  # fmt: skip
    proofs = "".join(
        _json_line({"global": _proof_out(g), "tenant": _proof_out(t)})
        for g, t in zip(bundle.global_proofs, bundle.tenant_proofs, strict=True)
    )
    files = {
        "events.jsonl": events.encode(),
        "proofs.jsonl": proofs.encode(),
        "checkpoints.json": json.dumps(
            {"global": bundle.global_checkpoints, "tenant": bundle.tenant_checkpoints}, indent=1
        ).encode(),
        "consistency.json": json.dumps(
            {
                "global": _consistency_out(bundle.global_consistency),
                "tenant": _consistency_out(bundle.tenant_consistency),
            }
        ).encode(),
        "keys.txt": "".join(f"{k}\n" for k in bundle.keys).encode(),
    }
    manifest = {
        "format": FORMAT,
        "origin": bundle.origin,
        "tenant_id": bundle.tenant_id,
        "since": bundle.since,
        "until": bundle.until,
        "files": {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())},
    }
    files[MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    return files


def write(bundle: Bundle, path: str | Path) -> Path:
    """Write the bundle's files into the directory ``path`` (created; it must not hold a bundle already)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MANIFEST).exists():
        raise BundleError(f"{folder} already holds a bundle")
    for name, content in render(bundle).items():
        (folder / name).write_bytes(content)
    return folder


def read_files(path: str | Path) -> dict[str, bytes]:
    """Every regular file directly in the bundle directory, by name."""
    folder = Path(path)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a bundle directory")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleError("expected an integer")
    return value


def _proof_in(raw: Any) -> InclusionProof:
    return InclusionProof(_int(raw["index"]), _int(raw["tree_size"]), tuple(_unb64(h) for h in raw["hashes"]))


def _consistency_in(raw: Any) -> dict[tuple[int, int], list[bytes]]:
    proofs: dict[tuple[int, int], list[bytes]] = {}
    for item in raw:
        proofs[(_int(item["from"]), _int(item["to"]))] = [_unb64(h) for h in item["hashes"]]
    return proofs


def _lines(content: bytes) -> list[Any]:
    return [json.loads(line) for line in content.decode("utf-8").splitlines() if line.strip()]


def _notes(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise BundleError("checkpoints are lists of signed notes")
    return list(raw)


def parse(files: Mapping[str, bytes]) -> Bundle:
    """The bundle of these files (the manifest's hashes are checked by :func:`check_manifest`)."""
    try:
        manifest = json.loads(files[MANIFEST])
        if manifest.get("format") != FORMAT:
            raise BundleError(f"not a bundle of format {FORMAT}")
        events = [
            BundleEvent(_int(e["leaf"]), _int(e["tenant_leaf"]), _int(e["notification_id"]), _unb64(e["stored"]))
            for e in _lines(files["events.jsonl"])
        ]
        proofs = _lines(files["proofs.jsonl"])
        checkpoints = json.loads(files["checkpoints.json"])
        consistency = json.loads(files["consistency.json"])
        keys = [line for line in files["keys.txt"].decode("utf-8").splitlines() if line.strip()]
        return Bundle(
            origin=str(manifest["origin"]),
            tenant_id=str(manifest["tenant_id"]),
            events=events,
            global_proofs=[_proof_in(p["global"]) for p in proofs],
            tenant_proofs=[_proof_in(p["tenant"]) for p in proofs],
            global_checkpoints=_notes(checkpoints["global"]),
            tenant_checkpoints=_notes(checkpoints["tenant"]),
            global_consistency=_consistency_in(consistency["global"]),
            tenant_consistency=_consistency_in(consistency["tenant"]),
            keys=keys,
            since=manifest.get("since"),
            until=manifest.get("until"),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # JSON, UTF-8, a missing or odd field
        raise BundleError(f"malformed bundle ({type(error).__name__}: {error})") from error


def check_manifest(files: Mapping[str, bytes]) -> list[Problem]:
    """Each file the manifest lists has its hash; no file is missing or added."""
    try:
        listed = json.loads(files[MANIFEST])["files"]
        if not isinstance(listed, dict):
            raise TypeError("files")
    except (KeyError, TypeError, ValueError) as error:
        return [Problem(f"manifest: unreadable ({type(error).__name__})")]
    problems = []
    for name in sorted(set(FILES) | set(listed) | (set(files) - {MANIFEST})):
        if name not in listed:
            problems.append(Problem(f"manifest: {name} is not listed"))
        elif name not in files:
            problems.append(Problem(f"manifest: {name} is missing"))
        elif hashlib.sha256(files[name]).hexdigest() != listed[name]:
            problems.append(Problem(f"manifest: {name} does not have the hash the manifest lists"))
    return problems


def split_pinned(notes: Iterable[str], origin: str) -> tuple[list[str], list[str]]:
    """Pinned checkpoints of the global log and of other logs (the tenant's), by their unverified origin line."""
    global_notes: list[str] = []
    others: list[str] = []
    for note in notes:
        try:
            own = parse_checkpoint(parse_note(note).text).origin == origin
        except NoteError:
            own = True  # verified (and refused) with the global ones
        (global_notes if own else others).append(note)
    return global_notes, others


def read_pinned(text: str) -> list[str]:
    """Signed notes from a pinned file: one note, or JSON as ``GET /api/v1/audit/checkpoints`` answers."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        data = json.loads(stripped)
        items = data if isinstance(data, list) else data.get("checkpoints", [data])
        return [str(item["note"]) for item in items]
    return [text]


@dataclass
class BundleReport:
    """The verdict on one bundle."""

    tenant_id: str
    checkpoints_valid: int = 0
    checkpoints_total: int = 0
    events_verified: int = 0
    events_total: int = 0
    pinned_extended: int = 0
    pinned_total: int = 0
    tenant_size: int | None = None
    covered: tuple[int, int] | None = None  # tenant leaves [first, last] present
    problems: list[Problem] = field(default_factory=list)
    first_bad: str | None = None

    @property
    def ok(self) -> bool:
        """Everything verified."""
        return not self.problems and self.tenant_size is not None

    def lines(self) -> list[str]:
        """What an auditor reads."""
        lines = [
            f"{self.checkpoints_valid}/{self.checkpoints_total} checkpoints valid",
            f"{self.events_verified}/{self.events_total} events verified",
        ]
        if self.pinned_total:
            lines.append(f"{self.pinned_extended}/{self.pinned_total} pinned checkpoints extended by the newest")
        if self.tenant_size is not None:
            if self.covered is None:
                span = "no events"
            else:
                whole = self.covered == (0, self.tenant_size - 1)
                span = f"tenant leaves {self.covered[0]}..{self.covered[1]}" + (
                    " (complete)" if whole else " (a range)"
                )
            lines.append(f"tenant {self.tenant_id}: its signed tree holds {self.tenant_size} events; bundle has {span}")
        lines += [p.what if p.position is None else f"position {p.position}: {p.what}" for p in self.problems]
        if self.first_bad is not None:
            lines.append(f"FAILED: first bad position {self.first_bad}")
        elif self.problems:
            lines.append("FAILED")
        return lines


def verify_bundle(
    path: str | Path | Mapping[str, bytes], pinned: Sequence[str] = (), keys: Sequence[str] | None = None
) -> BundleReport:
    """Verify a bundle (a directory, or its files by name) against its own keys or ``keys``, and ``pinned``."""
    try:
        files = dict(path) if isinstance(path, Mapping) else read_files(path)
        problems = check_manifest(files)
        bundle = parse(files)
    except (BundleError, OSError) as error:
        return BundleReport("?", problems=[Problem(f"bundle: {error}")], first_bad="(unreadable bundle)")
    report = BundleReport(bundle.tenant_id, problems=problems)
    trusted = list(keys) if keys is not None else bundle.keys
    own_origin = tenant_origin(bundle.origin, bundle.tenant_id)
    pinned_global, pinned_tenant = split_pinned(pinned, bundle.origin)
    if len(bundle.global_proofs) != len(bundle.events):
        report.problems.append(Problem("bundle: not one proof line per event"))
    g = verify_log(
        [(e.leaf, e.stored) for e in bundle.events], bundle.global_proofs, bundle.global_checkpoints, trusted,
        origin=bundle.origin, pinned=pinned_global, consistency=bundle.global_consistency,
    )  # fmt: skip
    t = verify_log(
        [(e.tenant_leaf, tenant_leaf_data(e.leaf, leaf_hash(e.stored))) for e in bundle.events],
        bundle.tenant_proofs, bundle.tenant_checkpoints, trusted,
        origin=own_origin, pinned=pinned_tenant, consistency=bundle.tenant_consistency,
    )  # fmt: skip
    _combine(report, bundle, g, t)
    return report


def _combine(report: BundleReport, bundle: Bundle, g: Report, t: Report) -> None:
    """Both trees' verdicts as one: an event verifies when it does in both; the tenant tree proves the count."""
    by_tenant_leaf = {e.tenant_leaf: e.leaf for e in bundle.events}
    bad_global = {p.position for p in g.problems if p.position is not None}
    bad_tenant = {p.position for p in t.problems if p.position is not None}
    report.checkpoints_valid = g.checkpoints_valid + t.checkpoints_valid
    report.checkpoints_total = g.checkpoints_total + t.checkpoints_total
    report.pinned_extended = g.pinned_extended + t.pinned_extended
    report.pinned_total = g.pinned_total + t.pinned_total
    report.events_total = len(bundle.events)
    report.events_verified = sum(
        1 for e in bundle.events if e.leaf not in bad_global and e.tenant_leaf not in bad_tenant
    ) if g.newest is not None and t.newest is not None else 0  # fmt: skip
    report.problems += list(g.problems)
    report.problems += [_tenant_problem(p, by_tenant_leaf) for p in t.problems]
    report.problems += _order(bundle.events)
    firsts = [str(p) for p in sorted(bad_global)[:1]]
    if t.newest is not None:
        report.tenant_size = t.newest.size
        report.problems += _completeness(bundle, t.newest.size, firsts)
    if bad_tenant:
        leaf = min(bad_tenant)
        firsts.append(str(by_tenant_leaf[leaf]) if leaf in by_tenant_leaf else f"tenant leaf {leaf}")
    present = sorted(e.tenant_leaf for e in bundle.events)
    report.covered = (present[0], present[-1]) if present else None
    if report.problems:
        report.first_bad = min(firsts, key=_order_key) if firsts else None


def _order_key(name: str) -> tuple[int, int]:
    """Log positions before tenant leaves, each by number."""
    return (0, int(name)) if name.isdigit() else (1, int(name.rsplit(" ", 1)[-1]))


def _tenant_problem(problem: Problem, by_tenant_leaf: Mapping[int, int]) -> Problem:
    if problem.position is None:
        return Problem(f"tenant tree: {problem.what}")
    leaf = by_tenant_leaf.get(problem.position)
    where = f"tenant leaf {problem.position}"
    if leaf is None:
        return Problem(f"{where}: {problem.what}")
    return Problem(f"{where}: {problem.what}", leaf)


def _order(events: Sequence[BundleEvent]) -> list[Problem]:
    """The tenant's order is the log's: global leaves rise with tenant leaves."""
    problems = []
    ordered = sorted(events, key=lambda e: e.tenant_leaf)
    for before, after in itertools.pairwise(ordered):
        if after.leaf <= before.leaf:
            problems.append(
                Problem(
                    f"tenant leaf {after.tenant_leaf} comes before tenant leaf {before.tenant_leaf} in the log",
                    after.leaf,
                )
            )
    return problems


def _completeness(bundle: Bundle, size: int, firsts: list[str]) -> list[Problem]:
    """Every tenant leaf of the signed tenant tree is in the bundle (within its range, for a range export)."""
    present = {e.tenant_leaf for e in bundle.events}
    ranged = bundle.since is not None or bundle.until is not None
    start = min(present, default=size) if ranged else 0
    end = max(present, default=-1) + 1 if ranged and bundle.until is not None else size
    missing = [k for k in range(start, end) if k not in present]
    if not missing:
        return []
    firsts.append(f"tenant leaf {missing[0]}")
    shown = ", ".join(str(k) for k in missing[:10]) + (", ..." if len(missing) > 10 else "")
    return [Problem(f"tenant leaves missing from the bundle ({len(missing)} of the {size} signed): {shown}")]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m projections.integrity.bundle BUNDLE [--pinned FILE]... [--key VKEY]...``: this package alone."""
    import argparse

    parser = argparse.ArgumentParser(description="Verify an OwnLLM audit bundle offline.")
    parser.add_argument("bundle")
    parser.add_argument("--pinned", action="append", default=[], help="a checkpoint saved earlier (repeat)")
    parser.add_argument("--key", action="append", default=None, help="trust this vkey, not the bundle's (repeat)")
    args = parser.parse_args(argv)
    notes = [note for path in args.pinned for note in read_pinned(Path(path).read_text())]
    report = verify_bundle(args.bundle, notes, args.key)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
