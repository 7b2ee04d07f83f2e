"""A local append-only spool for usage records the store could not take, replayed when it can.

Layout: one directory (``{var_dir}/usage-spool``, 0700) holding ``live.jsonl``, where records are
appended, and ``replay-*.jsonl``, files taken for replay. Each line is one record as JSON
(msgspec). Replay first renames the live file (atomic), so appends meanwhile go to a new live
file; a replay file is deleted only after every record in it was stored. A crash in the middle of
a replay leaves the file, and the next replay sends it again: the store records each request id
once (its event id is derived from the request id), so nothing is doubled.

fsync policy: the writer thread's spills (shutdown with the store down, a stuck writer) are
fsynced before they count as written. A record spilled by ``put`` (the buffer past its bound, on
the serving thread) is written at once, so a process crash loses nothing, and fsynced at the
writer's next pass: a power loss can lose what was spilled since that pass.

One process per spool directory (as the embedded setup runs): another process's append racing a
rename could land in a file already read. Processes sharing a machine need their own ``var_dir``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

LIVE = "live.jsonl"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Spool:
    """Appends records as JSON lines to a 0600 file; hands back whole files for replay."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._dirty = False  # written since the last fsync
        self.has_records = bool(self.files()) or self._live_size() > 0
        self.unreadable = 0  # lines that did not decode (a torn last line after a power loss)

    # -- appending --------------------------------------------------------------------------

    def append(self, records: Iterable[dict[str, Any]], *, sync: bool = False) -> int:
        """Append records (one ``write`` per record, so a crash tears at most the last line)."""
        lines = [_encode(r) + b"\n" for r in records]
        if not lines:
            return 0
        with self._lock:
            fd = self._open()
            for line in lines:
                os.write(fd, line)
            self._dirty = True
            self.has_records = True
            if sync:
                self._sync(fd)
        return len(lines)

    def sync(self) -> None:
        """fsync what ``append`` wrote since the last sync (the writer thread calls it each pass)."""
        if not self._dirty:
            return
        with self._lock:
            if self._fd is not None and self._dirty:
                self._sync(self._fd)

    def close(self) -> None:
        """Sync and close the live file."""
        self.sync()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            created = not (self.directory / LIVE).exists()
            self._fd = os.open(self.directory / LIVE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if created:
                _sync_dir(self.directory)  # the file's name survives a power loss too
        return self._fd

    def _sync(self, fd: int) -> None:
        os.fsync(fd)
        self._dirty = False

    def _live_size(self) -> int:
        try:
            return (self.directory / LIVE).stat().st_size
        except FileNotFoundError:
            return 0

    # -- replaying --------------------------------------------------------------------------

    def take(self) -> list[Path]:
        """Every file to replay, oldest first: earlier leftovers, then the live file renamed."""
        with self._lock:
            if self._live_size() > 0:
                if self._fd is not None:
                    self._sync(self._fd)
                    os.close(self._fd)
                    self._fd = None
                os.rename(self.directory / LIVE, self.directory / f"replay-{time.time_ns():020d}.jsonl")
                _sync_dir(self.directory)
            files = self.files()
            self.has_records = bool(files)
            return files

    def files(self) -> list[Path]:
        """The replay files left (by a crash, or a replay the store refused), oldest first."""
        return sorted(self.directory.glob("replay-*.jsonl"))

    def read(self, path: Path) -> Iterator[dict[str, Any]]:
        """The records of one replay file; a line that does not decode is logged and skipped."""
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield _decode(line)
                except msgspec.DecodeError:
                    self.unreadable += 1
                    log.error("usage spool %s line %d does not decode (torn by a crash?): skipped", path.name, number)

    def done(self, path: Path) -> None:
        """Every record of ``path`` is stored: delete it."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _sync_dir(self.directory)
        with self._lock:
            self.has_records = bool(self.files()) or self._live_size() > 0

    def count(self) -> int:
        """How many records wait in the spool (a scan: for tests and the CLI, not the hot path)."""
        paths = [*self.files(), self.directory / LIVE]
        return sum(1 for p in paths if p.exists() for _ in self.read(p))


def _sync_dir(directory: Path) -> None:
    """fsync a directory, so a created, renamed or deleted name is durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
