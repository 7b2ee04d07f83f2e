"""C2SP signed notes (Ed25519), parsed strictly.

A signed note (c2sp.org/signed-note) is a text ending in a newline, a blank line, then one or more
lines ``— <key name> base64(4-byte key id || signature)``; the signature covers the text including its
final newline. The key id is ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]``. A verifier
ignores signatures by keys it does not know, rejects the note when a known key's signature fails, and
rejects it when no known key signed it (keys: :mod:`projections.integrity.note_keys`; checkpoints, the notes
a log signs: :mod:`projections.integrity.checkpoints`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from projections.integrity.note_keys import (
    SIGNATURE_PREFIX,
    NoteError,
    Signature,
    Signer,
    Verifier,
    check_key_name,
    decode_b64,
)

MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
MAX_NOTE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Note:
    """A note's text and its signature lines, not yet verified."""

    text: str
    signatures: tuple[Signature, ...]


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note's text together with the known keys whose signatures on it verified."""

    text: str
    signed_by: tuple[Verifier, ...]


def _check_characters(message: str) -> bytes:
    """UTF-8 bytes of ``message``, which holds no control character but newline."""
    try:
        raw = message.encode("utf-8")
    except UnicodeEncodeError as error:
        raise NoteError("a note is valid UTF-8") from error
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError("note too large")
    if any(c < " " and c != "\n" for c in message):
        raise NoteError("a note holds no control characters but newlines")
    return raw


def check_text(text: str) -> None:
    """A note's text is non-empty, ends with a newline, and holds no other control character."""
    _check_characters(text)
    if not text.endswith("\n"):
        raise NoteError("a note's text ends with a newline")


def sign_note(text: str, signers: Iterable[Signer]) -> str:
    """The signed note of ``text`` with one signature line per signer."""
    check_text(text)
    raw = text.encode()
    lines = [signer.sign(raw).line() for signer in signers]
    if not lines:
        raise NoteError("a signed note needs at least one signer")
    return text + "\n" + "".join(lines)


def parse_note(message: str | bytes) -> Note:
    """Split a signed note into its text and signature lines, rejecting anything malformed."""
    if isinstance(message, bytes):
        if len(message) > MAX_NOTE_BYTES:
            raise NoteError("note too large")
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as error:
            raise NoteError("a note is valid UTF-8") from error
    _check_characters(message)
    split = message.rfind("\n\n")
    if split < 0:
        raise NoteError("a note's text and signatures are separated by a blank line")
    text, block = message[: split + 1], message[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("a note ends with a signature line and its newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("too many signatures")
    return Note(text, tuple(_parse_signature(line) for line in lines))


def _parse_signature(line: str) -> Signature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError("a signature line starts with an em dash and a space")
    parts = line[len(SIGNATURE_PREFIX) :].split(" ")
    if len(parts) != 2:
        raise NoteError("a signature line is: em dash, space, key name, space, base64 signature")
    name, encoded = parts
    check_key_name(name)
    raw = decode_b64(encoded)
    if len(raw) < 5:
        raise NoteError("a signature holds a 4-byte key id and the signature itself")
    return Signature(name, raw[:4], raw[4:])


def open_note(message: str | bytes, verifiers: Iterable[Verifier]) -> OpenedNote:
    """The note's text once a known key's signature verifies; unknown keys are ignored, a bad known one rejects."""
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        previous = known.setdefault((verifier.name, verifier.key_id), verifier)
        if previous.public_key != verifier.public_key:
            raise NoteError(f"two verifier keys share the name and id of {verifier.name}")
    note = parse_note(message)
    raw = note.text.encode()
    signed_by: list[Verifier] = []
    for signature in note.signatures:
        signer = known.get((signature.name, signature.key_id))
        if signer is None:
            continue
        if not signer.verifies(raw, signature):
            raise NoteError(f"the signature by {signature.name} ({signature.key_id.hex()}) does not verify")
        if signer not in signed_by:
            signed_by.append(signer)
    if not signed_by:
        raise NoteError("no signature by a known key")
    return OpenedNote(note.text, tuple(signed_by))
