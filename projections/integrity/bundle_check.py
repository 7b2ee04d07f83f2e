"""Verifying a tenant's audit bundle offline: both trees' proofs, the checkpoints, completeness, pinned checkpoints.

:func:`verify_bundle` prints like CloudTrail's validator (``N/M checkpoints valid``, ``K/K events
verified``) and names the first bad position. What it proves, and why the tenant tree is needed,
is in :mod:`projections.integrity.ledger`.

Cost: the bundle holds O(log n) hashes per event and per checkpoint, so verifying it costs
O((events + checkpoints) * log n), never the size of the whole log. An auditor who verified up to a
checkpoint and pinned it exports with ``--from`` later: the new bundle holds only the events since,
and the pinned checkpoint is proven extended by one consistency proof (O(log n)).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from projections.integrity.bundle_format import (
    Bundle,
    BundleError,
    BundleEvent,
    check_manifest,
    parse,
    read_files,
    tenant_leaf_data,
    tenant_origin,
)
from projections.integrity.checkpoints import parse_checkpoint
from projections.integrity.merkle import leaf_hash
from projections.integrity.note_keys import NoteError
from projections.integrity.notes import parse_note
from projections.integrity.verify import Problem, Report, count_lines, problem_lines, verify_log


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
        pinned = (self.pinned_extended, self.pinned_total)
        lines = count_lines(
            (self.checkpoints_valid, self.checkpoints_total), (self.events_verified, self.events_total), pinned
        )
        if self.tenant_size is not None:
            if self.covered is None:
                span = "no events"
            else:
                whole = self.covered == (0, self.tenant_size - 1)
                span = f"tenant leaves {self.covered[0]}..{self.covered[1]}" + (
                    " (complete)" if whole else " (a range)"
                )
            lines.append(f"tenant {self.tenant_id}: its signed tree holds {self.tenant_size} events; bundle has {span}")
        lines += problem_lines(self.problems)
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
