"""C2SP transparency-log checkpoints: the signed notes in which a log states its size and root.

A checkpoint (c2sp.org/tlog-checkpoint) is a note whose text is the log's origin, its tree size in
decimal and its base64 RFC 9162 root hash, one per line, then optional non-empty extension lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from projections.integrity.note_keys import NoteError, Signer, Verifier, decode_b64, encode_b64
from projections.integrity.notes import OpenedNote, check_text, open_note, sign_note

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed statement: at ``size`` leaves, the tree of ``origin`` has root ``root``."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("a checkpoint's origin is one non-empty line")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise NoteError("a tree size is a non-negative 63-bit integer")
        if len(self.root) != 32:
            raise NoteError("a root hash is 32 bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise NoteError("extension lines are non-empty single lines")

    def text(self) -> str:
        """The note text of this checkpoint."""
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), encode_b64(self.root), *self.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint's note text, strictly (decimal without leading zeros, canonical base64)."""
    check_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a tree size and a root hash")
    origin, size, root, *extensions = lines
    if not _DECIMAL.fullmatch(size) or len(size) > 19:
        raise NoteError("a tree size is decimal without leading zeros")
    return Checkpoint(origin, int(size), decode_b64(root), tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Iterable[Signer]) -> str:
    """The checkpoint as a signed note."""
    return sign_note(checkpoint.text(), signers)


def open_checkpoint(
    message: str | bytes, verifiers: Iterable[Verifier], origin: str | None = None
) -> tuple[Checkpoint, OpenedNote]:
    """A checkpoint signed by a known key (and of ``origin`` when given), with the note it came in."""
    opened = open_note(message, verifiers)
    checkpoint = parse_checkpoint(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"a checkpoint of {checkpoint.origin!r}, not of {origin!r}")
    return checkpoint, opened
