"""C2SP signed notes (Ed25519) and transparency-log checkpoints, parsed strictly.

A signed note (c2sp.org/signed-note) is a text ending in a newline, a blank line, then one or more
lines ``— <key name> base64(4-byte key id || signature)``; the signature covers the text including its
final newline. The key id is ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]``. A verifier
ignores signatures by keys it does not know, rejects the note when a known key's signature fails, and
rejects it when no known key signed it. Knowing several keys is how a key rotates: checkpoints signed
by a retired key keep verifying while its verifier key is kept.

A checkpoint (c2sp.org/tlog-checkpoint) is a note whose text is the log's origin, its tree size in
decimal and its base64 RFC 9162 root hash, one per line, then optional non-empty extension lines.

Verifier keys travel as text, ``<name>+<hex key id>+<base64(0x01 || public key)>``; signing keys as
``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>`` (the encodings of Go's
``golang.org/x/mod/sumdb/note``, which other tools read).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
MAX_NOTE_BYTES = 1 << 20
_HEX_ID = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = (1 << 63) - 1


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed or not signed by a known key."""


def _b64decode(text: str) -> bytes:
    """Standard base64, canonical only (no whitespace, no stray padding or bits)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise NoteError("not base64") from error
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError("not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_key_name(name: str) -> None:
    """A key name is non-empty, without Unicode spaces, plus signs or control characters."""
    if not name or any(c.isspace() or c == "+" or c < " " for c in name):
        raise NoteError(f"invalid key name {name!r}")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The line as written in a note, with its newline."""
        return f"{SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class Verifier:
    """A named Ed25519 public key that notes are checked against."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The key as text: ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(bytes([ED25519]) + self.public_key)}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read a verifier key from its text, checking that its id fits its name and key."""
        parts = vkey.split("+", 2)
        if len(parts) != 3 or not _HEX_ID.fullmatch(parts[1]):
            raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, encoded = parts
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id:
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def verifies(self, text: bytes, signature: Signature) -> bool:
        """Whether ``signature`` is this key's valid signature of ``text``."""
        if (signature.name, signature.key_id) != (self.name, self.key_id) or len(signature.signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature.signature, text)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A named Ed25519 private key that signs notes."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """The key of a 32-byte RFC 8032 seed."""
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Read a signing key from its text ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``."""
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _HEX_ID.fullmatch(parts[3]):
            raise NoteError("a signing key is PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>")
        raw = _b64decode(parts[4])
        if len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("only Ed25519 signing keys (type 0x01, 32-byte seed) are supported")
        signer = cls.from_seed(parts[2], raw[1:])
        if signer.verifier.key_id.hex() != parts[3]:
            raise NoteError("the signing key's id does not match its name and key")
        return signer

    @property
    def skey(self) -> str:
        """The key as text (a secret: keep it out of databases and logs)."""
        seed = self.private_key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{_b64encode(bytes([ED25519]) + seed)}"

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.private_key.public_key().public_bytes_raw())

    def sign(self, text: bytes) -> Signature:
        """This key's signature of ``text``."""
        return Signature(self.name, self.verifier.key_id, self.private_key.sign(text))


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
    raw = _b64decode(encoded)
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
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), _b64encode(self.root), *self.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint's note text, strictly (decimal without leading zeros, canonical base64)."""
    check_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a tree size and a root hash")
    origin, size, root, *extensions = lines
    if not _DECIMAL.fullmatch(size) or len(size) > 19:
        raise NoteError("a tree size is decimal without leading zeros")
    return Checkpoint(origin, int(size), _b64decode(root), tuple(extensions))


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
