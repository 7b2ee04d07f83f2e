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
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


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
    os.close(os.open(file, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    file.chmod(PRIVATE_FILE_MODE)
    for suffix in ("-wal", "-shm", "-journal"):  # left by an older version under the default umask
        with contextlib.suppress(FileNotFoundError):
            Path(f"{file}{suffix}").chmod(PRIVATE_FILE_MODE)
    return file


def read_or_create_secret(path: Path) -> str:
    """The secret kept in ``path``, created (0600, never overwritten) on first use."""
    private_dir(path.parent)
    try:
        if (path.stat().st_mode & 0o777) != PRIVATE_FILE_MODE:
            path.chmod(PRIVATE_FILE_MODE)
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value
