"""Credential hashing in the form nats-server verifies: bcrypt with the ``$2a$`` prefix."""

from __future__ import annotations

import bcrypt

# nats-server checks the hash on each connect only; an agent's password is 256 random bits, so the
# cost guards nothing a guess could reach and 11 (about 0.1 s here) is plenty.
BCRYPT_ROUNDS = 11


def bcrypt_hash(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """A bcrypt hash nats-server accepts."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds, prefix=b"2a")).decode()
