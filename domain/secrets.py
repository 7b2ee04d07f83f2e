"""Bearer secrets: generation and keyed hashing (HMAC-SHA256 with a server-side pepper).

Why a keyed hash and not argon2/scrypt: our secrets are 256-bit random values, so there is no
dictionary to attack and a slow KDF buys nothing; it would only cost ~50 ms of CPU on every
request. HMAC with a pepper kept outside the database means a leaked event store alone cannot
even confirm a guessed key, and the hash doubles as the O(1) lookup index on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX = "ollm_"
PAIRING_PREFIX = "ollmpair_"
INVITE_PREFIX = "ollminv_"
OPERATOR_TOKEN_PREFIX = "ollmop_"
VISIBLE_CHARS = 12


def new_secret(prefix: str) -> str:
    """A fresh 256-bit bearer secret with a recognisable prefix."""
    return prefix + secrets.token_urlsafe(32)


def visible_prefix(secret: str) -> str:
    """The part of a secret shown in listings so users can tell their keys apart."""
    return secret[:VISIBLE_CHARS]


def keyed_hash(pepper: bytes, secret: str) -> str:
    """The stored form of a secret: HMAC-SHA256 under the server pepper, hex."""
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()
