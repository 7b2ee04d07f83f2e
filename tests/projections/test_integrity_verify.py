"""The offline verifier: an untouched tenant's view always verifies; each kind of tampering is named at its position."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.integrity.checkpoints import Checkpoint, sign_checkpoint
from projections.integrity.merkle import MerkleTree
from projections.integrity.note_keys import Signer
from projections.integrity.verify import InclusionProof, Report, verify_full_log, verify_log

ORIGIN = "log.example/ownllm"
KEY = Signer.from_seed(ORIGIN, bytes(range(32)))
STRANGER = Signer.from_seed(ORIGIN, bytes(range(5, 37)))


@dataclass
class Log:
    """A whole log as the operator holds it: every tenant's events, the tree, the signed checkpoints."""

    tenants: list[str]
    stored: list[bytes]
    tree: MerkleTree = field(default_factory=MerkleTree)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, tenants: list[str], every: int, signer: Signer = KEY, salt: bytes = b"") -> Log:
        log = cls(tenants, [b"%s|event %d|%s" % (t.encode(), i, salt) for i, t in enumerate(tenants)])
        for position, data in enumerate(log.stored, 1):
            log.tree.append(data)
            if position % every == 0 or position == len(tenants):
                log.sign(signer)
        return log

    def sign(self, signer: Signer) -> None:
        checkpoint = Checkpoint(ORIGIN, self.tree.size, self.tree.root())
        self.checkpoints.append(checkpoint)
        self.notes.append(sign_checkpoint(checkpoint, [signer]))

    def bundle(self, tenant: str) -> Bundle:
        """The tenant's events, each proven against the first checkpoint that covers it."""
        newest = self.checkpoints[-1].size
        events, proofs = [], []
        for index, (owner, data) in enumerate(zip(self.tenants, self.stored, strict=True)):
            if owner == tenant:
                size = next(c.size for c in self.checkpoints if c.size > index)
                events.append((index, data))
                proofs.append(InclusionProof(index, size, tuple(self.tree.inclusion_proof(index, size))))
        consistency = {(c.size, newest): self.tree.consistency_proof(c.size, newest) for c in self.checkpoints}
        return Bundle(events, proofs, list(self.notes), consistency)


@dataclass
class Bundle:
    events: list[tuple[int, bytes]]
    proofs: list[InclusionProof]
    notes: list[str]
    consistency: dict[tuple[int, int], list[bytes]]

    def verify(self, keys: list[str] | None = None, pinned: list[str] | None = None) -> Report:
        return verify_log(
            self.events,
            self.proofs,
            self.notes,
            keys if keys is not None else [KEY.verifier.vkey],
            origin=ORIGIN,
            pinned=pinned or [],
            consistency=self.consistency,
        )


TENANTS = ["acme", "globex", "acme", "acme", "initech", "globex", "acme", "acme", "globex", "acme", "acme", "initech"]


def acme() -> tuple[Log, Bundle]:
    log = Log.build(TENANTS, every=5)
    return log, log.bundle("acme")


def test_an_untouched_bundle_verifies() -> None:
    log, bundle = acme()
    report = bundle.verify()
    assert report.ok, report.lines()
    assert report.lines() == ["3/3 checkpoints valid", "7/7 events verified"]
    assert report.newest == log.checkpoints[-1] and report.first_bad_position is None


def test_a_flipped_byte_is_named_at_its_position() -> None:
    _, bundle = acme()
    index, data = bundle.events[3]
    bundle.events[3] = (index, data[:4] + bytes([data[4] ^ 1]) + data[5:])
    report = bundle.verify()
    assert not report.ok and report.first_bad_position == index == 6
    assert report.events_verified == 6 and "6/7 events verified" in report.lines()


def test_a_deleted_event_is_named_by_the_proof_left_behind() -> None:
    _, bundle = acme()
    del bundle.events[2]
    report = bundle.verify()
    assert report.first_bad_position == 3 and "missing" in report.problems[0].what


def test_an_inserted_event_does_not_verify() -> None:
    log, bundle = acme()
    fake = (1, b"acme|event 1|")  # at another tenant's position, with that position's real proof
    bundle.events.insert(1, fake)
    bundle.proofs.append(InclusionProof(1, 5, tuple(log.tree.inclusion_proof(1, 5))))
    report = bundle.verify()
    assert report.first_bad_position == 1 and report.events_verified == 7


def test_two_swapped_events_are_both_caught() -> None:
    _, bundle = acme()
    (i, a), (j, b) = bundle.events[1], bundle.events[4]
    bundle.events[1], bundle.events[4] = (i, b), (j, a)
    report = bundle.verify()
    assert [p.position for p in report.problems] == [i, j] and report.first_bad_position == 2


def test_events_out_of_order_or_twice_are_caught() -> None:
    _, bundle = acme()
    bundle.events.insert(3, bundle.events[1])
    assert bundle.verify().first_bad_position == 2


def test_another_tenants_proof_does_not_prove_this_event() -> None:
    log, bundle = acme()
    other = InclusionProof(1, 5, tuple(log.tree.inclusion_proof(1, 5)))  # globex's event at position 1
    bundle.proofs[0] = replace(other, index=0)
    assert bundle.verify().first_bad_position == 0


def test_a_forged_checkpoint_is_invalid_and_proves_nothing() -> None:
    log, bundle = acme()
    forged = Checkpoint(ORIGIN, 10, bytes(32))
    signature = log.notes[1].split("\n\n")[1]
    bundle.notes[1] = forged.text() + "\n" + signature
    report = bundle.verify()
    assert report.checkpoints_valid == 2 and "2/3 checkpoints valid" in report.lines()
    assert report.first_bad_position == 6  # the first event proven against the forged one


def test_a_checkpoint_signed_by_an_unknown_key_is_invalid() -> None:
    log, bundle = acme()
    bundle.notes[0] = sign_checkpoint(log.checkpoints[0], [STRANGER])
    report = bundle.verify()
    assert report.checkpoints_valid == 2 and "no signature by a known key" in report.problems[0].what


def test_a_rewritten_history_resigned_with_the_real_key_is_caught_by_a_pinned_checkpoint() -> None:
    honest = Log.build(TENANTS, every=5)
    pinned = [honest.notes[0]]  # the tenant saved the checkpoint of size 5
    rewritten = Log.build(TENANTS, every=5, salt=b"rewritten")
    bundle = rewritten.bundle("acme")
    assert bundle.verify().ok  # alone, a consistent rewrite verifies
    report = bundle.verify(pinned=pinned)
    assert not report.ok and report.pinned_extended == 0
    assert "pinned checkpoint of size 5: size 5 is not a prefix" in report.problems[0].what
    assert honest.bundle("acme").verify(pinned=pinned).lines()[-1] == "1/1 pinned checkpoints extended by the newest"


def test_a_log_cut_shorter_than_a_pinned_checkpoint_is_caught() -> None:
    longer = Log.build([*TENANTS, "acme", "acme"], every=5)
    _, bundle = acme()
    report = bundle.verify(pinned=[longer.notes[-1]])
    assert "beyond the newest checkpoint" in report.problems[0].what


def test_a_checkpoint_without_its_consistency_proof_is_not_valid() -> None:
    _, bundle = acme()
    del bundle.consistency[(5, 12)]
    report = bundle.verify()
    assert report.checkpoints_valid == 2 and "no consistency proof from size 5 to 12" in report.problems[0].what


def test_a_fork_of_the_same_size_is_caught() -> None:
    _, bundle = acme()
    other = Log.build(TENANTS, every=5, salt=b"fork")
    bundle.notes.append(other.notes[-1])
    report = bundle.verify()
    assert report.checkpoints_valid == 3 and "two different roots for size 12" in report.problems[0].what


def test_rotation_old_checkpoints_verify_under_the_retired_key() -> None:
    log = Log.build(TENANTS[:10], every=5)
    new_key = Signer.from_seed("log.example/ownllm", bytes(range(9, 41)))
    log.tenants.extend(TENANTS[10:])
    log.stored.extend([b"late 1", b"late 2"])
    log.tree.extend([b"late 1", b"late 2"])
    log.sign(new_key)
    bundle = log.bundle("acme")
    assert bundle.verify([KEY.verifier.vkey, new_key.verifier.vkey]).ok
    assert bundle.verify([new_key.verifier.vkey]).checkpoints_valid == 1


def test_checkpoints_of_another_log_are_refused() -> None:
    _, bundle = acme()
    bundle.notes.append(sign_checkpoint(Checkpoint("other.example/log", 3, bytes(32)), [KEY]))
    assert "not of" in bundle.verify().problems[0].what


def test_no_valid_checkpoint_is_a_failure() -> None:
    _, bundle = acme()
    report = bundle.verify(keys=[STRANGER.verifier.vkey, "not a key"])
    assert (
        not report.ok
        and report.newest is None
        and report.lines()[:2]
        == [
            "0/3 checkpoints valid",
            "0/7 events verified",
        ]
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["acme", "globex", "initech"]), min_size=1, max_size=60),
    st.integers(1, 20),
    st.sampled_from(["acme", "globex", "initech"]),
)
def test_untouched_bundles_always_verify(tenants: list[str], every: int, tenant: str) -> None:
    report = Log.build(tenants, every).bundle(tenant).verify()
    assert report.ok and report.events_verified == tenants.count(tenant)


KINDS = ["flip", "delete", "swap", "move", "replay"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["acme", "globex"]), min_size=2, max_size=50).filter(lambda t: t.count("acme") >= 2),
    st.integers(1, 12),
    st.sampled_from(KINDS),
    st.data(),
)
def test_tampering_is_always_detected_at_its_position(tenants: list[str], every: int, kind: str, data) -> None:
    bundle = Log.build(tenants, every).bundle("acme")
    k = data.draw(st.integers(0, len(bundle.events) - 1))
    index, stored = bundle.events[k]
    if kind == "flip":
        byte, bit = data.draw(st.integers(0, len(stored) - 1)), data.draw(st.integers(0, 7))
        bundle.events[k] = (index, stored[:byte] + bytes([stored[byte] ^ 1 << bit]) + stored[byte + 1 :])
        expected = index
    elif kind == "delete":
        del bundle.events[k]
        expected = index
    elif kind == "swap":
        other = (k + 1) % len(bundle.events)
        j, other_stored = bundle.events[other]
        bundle.events[k], bundle.events[other] = (index, other_stored), (j, stored)
        expected = min(index, j)
    elif kind == "move":  # the event and its proof claim a position that is not theirs (its own goes unclaimed)
        free = sorted(set(range(len(tenants) + 2)) - {i for i, _ in bundle.events})
        target = data.draw(st.sampled_from(free))
        bundle.events[k] = (target, stored)
        bundle.events.sort()
        bundle.proofs[k] = replace(bundle.proofs[k], index=target)
        expected = target
    else:  # replay: the same event twice
        bundle.events.insert(k + 1, (index, stored))
        expected = index
    report = bundle.verify()
    assert not report.ok and report.first_bad_position == expected, report.lines()


def test_a_whole_log_verifies_in_one_pass_and_names_the_range_that_differs() -> None:
    log = Log.build(TENANTS, every=5)
    assert verify_full_log(log.stored, log.checkpoints) == (12, [])
    tampered = list(log.stored)
    tampered[7] = b"changed"
    count, problems = verify_full_log(tampered, log.checkpoints)
    assert count == 12 and len(problems) == 2
    assert problems[0].position == 5 and "positions 5..9" in problems[0].what


def test_a_whole_log_cut_short_under_its_checkpoint_is_caught() -> None:
    log = Log.build(TENANTS, every=5)
    count, problems = verify_full_log(log.stored[:11], log.checkpoints)
    assert count == 11 and problems[0].what == "the log ends before the checkpoint of size 12"
