"""Offline verification of a tenant's events against signed checkpoints, with no database and no network.

Given the events as stored (notification position, bytes), one inclusion proof per event, the log's
signed checkpoints, consistency proofs from each checkpoint to the newest, and the public keys, the
verifier reports how many checkpoints and events hold, in the words of CloudTrail's validator
(``N/M checkpoints valid``, ``K/K events verified``), and every problem with the position it concerns.

- A checkpoint is valid when a known key signed it, it names the expected origin, and it is proven a
  prefix of the newest one (so the history the checkpoints describe was only appended to).
- An event is verified when its inclusion proof takes its leaf hash to the root of a valid checkpoint
  at its own position: an altered byte, a moved, swapped or inserted event, or another tenant's
  proof all fail there; a proof without its event names a deleted event's position.
- Checkpoints the tenant saved earlier (``pinned``) must be extended by the newest one: a history
  rewritten and re-signed with the real key, or cut shorter, fails here.

:func:`verify_full_log` checks a whole log (every stored event from position 0) by rebuilding the
tree in one pass, which is how the operator's side (``--live``) checks it without proofs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from projections.integrity.checkpoints import Checkpoint, open_checkpoint
from projections.integrity.merkle import EMPTY_ROOT, CompactRange, leaf_hash
from projections.integrity.note_keys import NoteError, Verifier
from projections.integrity.proofs import ProofError, verify_consistency, verify_inclusion


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """The audit path of the leaf at ``index`` in the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that does not verify; ``position`` is the leaf index when it concerns an event."""

    what: str
    position: int | None = None


@dataclass(frozen=True)
class Report:
    """What held and what did not."""

    checkpoints_valid: int = 0
    checkpoints_total: int = 0
    events_verified: int = 0
    events_total: int = 0
    pinned_extended: int = 0
    pinned_total: int = 0
    newest: Checkpoint | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """Everything verified, and there was at least one valid checkpoint."""
        return not self.problems and self.newest is not None

    @property
    def first_bad_position(self) -> int | None:
        """The lowest event position with a problem, if any has one."""
        return min((p.position for p in self.problems if p.position is not None), default=None)

    def lines(self) -> list[str]:
        """The summary an auditor reads."""
        pinned = (self.pinned_extended, self.pinned_total)
        counts = count_lines(
            (self.checkpoints_valid, self.checkpoints_total), (self.events_verified, self.events_total), pinned
        )
        return counts + problem_lines(self.problems)


def count_lines(checkpoints: tuple[int, int], events: tuple[int, int], pinned: tuple[int, int]) -> list[str]:
    """The (valid, total) counts as an auditor reads them, in the words of CloudTrail's validator."""
    lines = [f"{checkpoints[0]}/{checkpoints[1]} checkpoints valid", f"{events[0]}/{events[1]} events verified"]
    if pinned[1]:
        lines.append(f"{pinned[0]}/{pinned[1]} pinned checkpoints extended by the newest")
    return lines


def problem_lines(problems: Iterable[Problem]) -> list[str]:
    """One line per problem, with the position it concerns."""
    return [p.what if p.position is None else f"position {p.position}: {p.what}" for p in problems]


@dataclass
class _Checked:
    """The checkpoints that passed, by size, and the problems met so far."""

    problems: list[Problem] = field(default_factory=list)
    by_size: dict[int, Checkpoint] = field(default_factory=dict)


def _verifiers(keys: Iterable[str | Verifier], problems: list[Problem]) -> list[Verifier]:
    verifiers = []
    for number, key in enumerate(keys, 1):
        try:
            verifiers.append(key if isinstance(key, Verifier) else Verifier.parse(key))
        except NoteError as error:
            problems.append(Problem(f"public key {number}: {error}"))
    return verifiers


def _open_all(
    label: str, notes: Sequence[str | bytes], verifiers: list[Verifier], origin: str | None, problems: list[Problem]
) -> list[Checkpoint]:
    """The checkpoints signed by a known key and of the origin; a problem for each other one."""
    opened = []
    for number, note in enumerate(notes, 1):
        try:
            checkpoint, _ = open_checkpoint(note, verifiers, origin)
        except NoteError as error:
            problems.append(Problem(f"{label} {number}: {error}"))
            continue
        opened.append(checkpoint)
    return opened


def _extends(old: Checkpoint, newest: Checkpoint, consistency: Mapping[tuple[int, int], Sequence[bytes]]) -> str | None:
    """Why ``newest`` does not extend ``old``, or None when it does."""
    if old.size == 0:
        return None if old.root == EMPTY_ROOT else "a checkpoint of size 0 with a root that is not the empty tree's"
    if old.size > newest.size:
        return f"size {old.size} is beyond the newest checkpoint ({newest.size}): the log was cut or rolled back"
    proof = consistency.get((old.size, newest.size), () if old.size == newest.size else None)
    if proof is None:
        return f"no consistency proof from size {old.size} to {newest.size}"
    try:
        verify_consistency(old.size, newest.size, proof, old.root, newest.root)
    except ProofError as error:
        return f"size {old.size} is not a prefix of the newest checkpoint: {error}"
    return None


def verify_log(
    events: Sequence[tuple[int, bytes]],
    proofs: Iterable[InclusionProof],
    checkpoints: Sequence[str | bytes],
    keys: Iterable[str | Verifier],
    *,
    origin: str | None = None,
    pinned: Sequence[str | bytes] = (),
    consistency: Mapping[tuple[int, int], Sequence[bytes]] | None = None,
) -> Report:
    """Check events (position, stored bytes) against their proofs, the checkpoints, and the pinned checkpoints.

    ``consistency`` maps ``(old size, newest size)`` to the proof that each other checkpoint and each
    pinned one is a prefix of the newest checkpoint. With ``origin`` None, all checkpoints must share
    the origin of the first one that verifies.
    """
    consistency = consistency or {}
    problems: list[Problem] = []
    verifiers = _verifiers(keys, problems)
    signed = _open_all("checkpoint", checkpoints, verifiers, origin, problems)
    if origin is None and signed:
        origin = signed[0].origin
        problems += [Problem(f"a checkpoint of another log ({c.origin!r})") for c in signed if c.origin != origin]
        signed = [c for c in signed if c.origin == origin]
    newest = max(signed, key=lambda c: c.size, default=None)
    if newest is None:
        problems.append(Problem("no checkpoint signed by a known key"))
        return Report(0, len(checkpoints), 0, len(events), 0, len(pinned), None, tuple(problems))
    by_size: dict[int, Checkpoint] = {}
    for checkpoint in signed:
        why = _extends(checkpoint, newest, consistency)
        if why is None and checkpoint.size in by_size and by_size[checkpoint.size].root != checkpoint.root:
            why = f"two signed checkpoints of size {checkpoint.size} disagree: the log forked"
        if why is None:
            by_size[checkpoint.size] = checkpoint
        else:
            problems.append(Problem(f"checkpoint of size {checkpoint.size}: {why}"))
    valid = sum(1 for c in signed if by_size.get(c.size) == c)
    extended = 0
    for checkpoint in _open_all("pinned checkpoint", pinned, verifiers, origin, problems):
        why = _extends(checkpoint, newest, consistency)
        if why is None:
            extended += 1
        else:
            problems.append(Problem(f"pinned checkpoint of size {checkpoint.size}: {why}"))
    verified = _verify_events(events, proofs, by_size, problems)
    return Report(valid, len(checkpoints), verified, len(events), extended, len(pinned), newest, tuple(problems))


def _verify_events(
    events: Sequence[tuple[int, bytes]],
    proofs: Iterable[InclusionProof],
    by_size: Mapping[int, Checkpoint],
    problems: list[Problem],
) -> int:
    """How many events verify; a problem, with its position, for each that does not."""
    by_index: dict[int, InclusionProof] = {}
    for given in proofs:
        if by_index.setdefault(given.index, given) is not given:
            problems.append(Problem("two inclusion proofs for one position", given.index))
    verified, previous, seen = 0, -1, set()
    for index, data in events:
        if index <= previous:
            problems.append(Problem(f"out of order after position {previous}", index))
            continue
        previous = index
        seen.add(index)
        proof = by_index.get(index)
        if proof is None:
            problems.append(Problem("no inclusion proof", index))
            continue
        checkpoint = by_size.get(proof.tree_size)
        if checkpoint is None:
            problems.append(Problem(f"proof against size {proof.tree_size}, which no valid checkpoint has", index))
            continue
        try:
            verify_inclusion(index, proof.tree_size, leaf_hash(data), proof.hashes, checkpoint.root)
        except ProofError:
            problems.append(
                Problem(f"not the event the log holds at this position (tree size {proof.tree_size})", index)
            )
            continue
        verified += 1
    problems += [Problem("a proof but no event: an event is missing", i) for i in sorted(set(by_index) - seen)]
    return verified


def verify_full_log(stored: Iterable[bytes], checkpoints: Iterable[Checkpoint]) -> tuple[int, list[Problem]]:
    """Rebuild the tree from every stored event (from position 0) and compare each checkpoint's root on the way.

    Returns the number of events read and the problems: a checkpoint whose root differs names the
    range of positions where the difference lies (after the last matching checkpoint, up to its size).
    """
    pending = sorted(checkpoints, key=lambda c: c.size)
    problems: list[Problem] = []
    compact = CompactRange()
    last_good = 0
    position = 0

    def check_at_size() -> None:
        nonlocal last_good
        while pending and pending[0].size == compact.size:
            checkpoint = pending.pop(0)
            if checkpoint.root == compact.root():
                last_good = checkpoint.size
            else:
                what = f"the events differ from the checkpoint of size {checkpoint.size} in positions {last_good}.."
                problems.append(Problem(what + str(checkpoint.size - 1), last_good))

    check_at_size()
    for data in stored:
        compact.append_hash(leaf_hash(data))
        position += 1
        if pending and pending[0].size == position:
            check_at_size()
    problems += [Problem(f"the log ends before the checkpoint of size {c.size}", position) for c in pending]
    return position, problems
