"""Audit rows as CSV (opens in a spreadsheet) or JSON lines, produced row by row (flat memory).

Exports read rows as stored text (no UUID or datetime objects per row) and look each actor's and
subject's display name up once per export: at a few hundred thousand rows a second, per-row
objects would be most of the cost.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

import msgspec

from api.audit_names import Names
from projections.audit_log import AuditFilter, AuditProjection, summary_of

BOM = "\ufeff"  # so a spreadsheet reads the file as UTF-8
HEADER = ("position", "time", "actor", "actor_name", "action", "subject_kind", "subject_id", "subject_name",
          "summary", "request_id")  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would evaluate these (OWASP CSV injection)
ROWS_PER_CHUNK = 1000
NAMED_KINDS = frozenset({"tenant", "user", "api_key", "agent"})  # subjects with a display name


def safe_cell(value: str | None) -> str:
    """A cell a spreadsheet shows as text: a leading formula character is escaped with ``'``."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


class ExportRows:
    """Stored rows to the exported columns, with display names looked up once per actor and subject."""

    def __init__(self, names: Names) -> None:
        self._names = names
        self._actors: dict[str, str] = {}
        self._subjects: dict[tuple[str, str], str | None] = {}

    def columns(self, raw: tuple[Any, ...]) -> tuple[Any, ...]:
        """(position, time, actor, actor_name, action, subject_kind, subject_id, subject_name, summary, request_id)."""
        position, _, time, actor, action, kind, subject, summary, request_id, _, requests, prompt, completion = raw
        actor_name = self._actors.get(actor)
        if actor_name is None:
            actor_name = self._actors[actor] = self._names.actor(actor)
        subject_name = None
        if kind in NAMED_KINDS:
            key = (kind, subject)
            if key in self._subjects:
                subject_name = self._subjects[key]
            else:
                subject_name = self._subjects[key] = self._names.subject(kind, UUID(subject))
        text = summary_of(action, summary, requests, prompt, completion)
        return position, time, actor, actor_name, action, kind, subject, subject_name, text, request_id


def csv_export(projection: AuditProjection, where: AuditFilter, names: Names) -> Iterator[bytes]:
    """The CSV export: formatted by PostgreSQL itself where the table can (``COPY``), else row by row here."""
    copy_csv = getattr(projection.table, "copy_csv", None)
    if copy_csv is None or where.involves is not None:
        yield from (chunk.encode() for chunk in csv_lines(projection.scan_raw(where), names))
        return
    yield (BOM + ",".join(f'"{column}"' for column in HEADER) + "\n").encode()  # COPY ends rows with LF
    yield from _joined(copy_csv(where, names.every_actor(), names.every_subject()))


def _joined(chunks: Iterable[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    """COPY hands over a row at a time; the response sends about ``size`` bytes at a time (each send
    of a streamed response is a hop between threads: one per row cost nine tenths of the export)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def csv_lines(rows: Iterable[tuple[Any, ...]], names: Names) -> Iterator[str]:
    """The header (after a BOM), then the rows, a thousand per chunk; times in ISO 8601 UTC."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(HEADER)
    yield BOM + _take(buffer)
    export = ExportRows(names)
    chunk = []
    for raw in rows:
        p, time, actor, actor_name, action, kind, subject, subject_name, summary, request_id = export.columns(raw)
        chunk.append((p, time, safe_cell(actor), safe_cell(actor_name), action, kind, subject,
                      safe_cell(subject_name), safe_cell(summary), safe_cell(request_id)))  # fmt: skip
        if len(chunk) == ROWS_PER_CHUNK:
            writer.writerows(chunk)
            chunk.clear()
            yield _take(buffer)
    if chunk:
        writer.writerows(chunk)
        yield _take(buffer)


class _Line(msgspec.Struct, array_like=False):
    position: int
    time: str
    actor: str
    actor_name: str
    action: str
    subject_kind: str
    subject_id: str
    subject_name: str | None
    summary: str
    request_id: str


def jsonl_lines(rows: Iterable[tuple[Any, ...]], names: Names) -> Iterator[bytes]:
    """One JSON object per line (the fields of ``GET /api/v1/audit``), a thousand lines per chunk."""
    encoder = msgspec.json.Encoder()
    export = ExportRows(names)
    chunk = bytearray()
    for count, raw in enumerate(rows, 1):
        encoder.encode_into(_Line(*export.columns(raw)), chunk, -1)
        chunk += b"\n"
        if count % ROWS_PER_CHUNK == 0:
            yield bytes(chunk)
            chunk.clear()
    if chunk:
        yield bytes(chunk)


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
