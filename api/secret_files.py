"""Private files of the embedded setup: ``var/`` is 0700, its databases and generated secrets 0600.

Modes are set by creating each file or folder with its mode (``os.open(..., 0o600)``,
``mkdir(mode=0o700)``) before anything is written to it, and by a ``chmod`` afterwards that also
tightens what an older version left readable; no process-wide umask is changed (threads of the
same process may be creating other files). SQLite gives its ``-wal`` and ``-shm`` files the mode
of the database file, so creating that file 0600 before SQLite opens it covers them too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class SecretFileError(RuntimeError):
    """A generated secret's file cannot be used as it is; the message names it and says what to do."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder only its owner can enter (created with parents when missing)."""
    folder = Path(path)
    folder.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    folder.chmod(PRIVATE_DIR_MODE)
    return folder


def private_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file only its owner can read: created empty 0600 when missing, else tightened.

    Call it before a database opens the file, so no byte is ever written under a looser mode.
    """
    file = Path(path)
    file.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    # O_EXCL: never open (and close) an existing database: closing any descriptor of it drops this
    # process's POSIX locks on it, those its open SQLite connections hold included.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    file.chmod(PRIVATE_FILE_MODE)
    for suffix in ("-wal", "-shm", "-journal"):  # left by an older version under the default umask
        with contextlib.suppress(FileNotFoundError):
            Path(f"{file}{suffix}").chmod(PRIVATE_FILE_MODE)
    return file


def read_or_create_secret(path: Path, generate: Callable[[], str] | None = None) -> str:
    """The secret kept in ``path``, created (0600, never overwritten) on first use (by ``generate``, default
    32 random bytes in URL-safe base64).

    The value is written to a temporary file, flushed to disk, then hard-linked to ``path``: the
    link fails when ``path`` exists (``O_EXCL`` semantics), so of two processes starting at once one
    wins and the other reads the winner's complete value; no reader ever sees a half-written file.
    An empty file (only a crash of an older version could leave one) is refused, never replaced:
    a secret that was already used to hash or sign something must not silently change.
    """
    private_dir(path.parent)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    value = generate() if generate is not None else secrets.token_urlsafe(32)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return _read(path)  # another process won the race: its value, complete, is the secret
        _fsync_dir(path.parent)
        return value
    finally:
        os.unlink(temp)


def _read(path: Path) -> str:
    if (path.stat().st_mode & 0o777) != PRIVATE_FILE_MODE:
        path.chmod(PRIVATE_FILE_MODE)
    value = path.read_text().strip()
    if not value:
        raise SecretFileError(
            f"{path} is empty (a crash while it was first written?). If this var directory has never "
            "stored anything (no events.sqlite beside it, or a new PostgreSQL schema), delete the file "
            "and start again to generate a new secret; otherwise restore it from a backup, or set the "
            "secret in the environment (for the API-key pepper: OWNLLM_KEY_PEPPER)."
        )
    return value


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MIN_PEPPER_BITS = 256
_HEX = frozenset("0123456789abcdefABCDEF")


def pepper_problem(value: str) -> str | None:
    """Why ``value`` is too weak to be the API-key pepper, or None when it is strong enough.

    The rule for "at least 32 bytes (256 bits) of entropy": a string cannot show how it was
    drawn, so its length stands for it, counted at 4 bits a character for hex and 6 bits for
    anything else (base64's alphabet): at least 64 hex digits (``openssl rand -hex 32``) or 43 other
    characters (``secrets.token_urlsafe(32)``, ``openssl rand -base64 32``). A value of fewer than 8
    distinct characters (``aaaa…``, ``0000…``) is refused whatever its length.
    """
    value = value.strip()
    if not value:
        return "is empty"
    bits_per_char = 4 if set(value) <= _HEX else 6
    needed = -(-MIN_PEPPER_BITS // bits_per_char)
    if len(value) < needed:
        kind = "hex digits" if bits_per_char == 4 else "characters"
        return f"is {len(value)} {kind} long; at least {needed} are needed for {MIN_PEPPER_BITS // 8} random bytes"
    if len(set(value)) < 8:
        return "repeats fewer than 8 distinct characters; it cannot be random"
    return None


PEPPER_HINT = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
