"""Ed25519 keys for C2SP signed notes: signers, verifiers, their ids and text encodings.

The key id is ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]``. Knowing several verifier keys
is how a key rotates: checkpoints signed by a retired key keep verifying while its verifier key is kept.

Verifier keys travel as text, ``<name>+<hex key id>+<base64(0x01 || public key)>``; signing keys as
``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>`` (the encodings of Go's
``golang.org/x/mod/sumdb/note``, which other tools read).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_HEX_ID = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed or not signed by a known key."""


def decode_b64(text: str) -> bytes:
    """Standard base64, canonical only (no whitespace, no stray padding or bits)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise NoteError("not base64") from error
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError("not canonical base64")
    return raw


def encode_b64(raw: bytes) -> str:
    """Standard base64 text."""
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
        return f"{SIGNATURE_PREFIX}{self.name} {encode_b64(self.key_id + self.signature)}\n"


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
        return f"{self.name}+{self.key_id.hex()}+{encode_b64(bytes([ED25519]) + self.public_key)}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read a verifier key from its text, checking that its id fits its name and key."""
        parts = vkey.split("+", 2)
        if len(parts) != 3 or not _HEX_ID.fullmatch(parts[1]):
            raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, encoded = parts
        raw = decode_b64(encoded)
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
        raw = decode_b64(parts[4])
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
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{encode_b64(bytes([ED25519]) + seed)}"

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.private_key.public_key().public_bytes_raw())

    def sign(self, text: bytes) -> Signature:
        """This key's signature of ``text``."""
        return Signature(self.name, self.verifier.key_id, self.private_key.sign(text))
