"""Audit rows as CSV (opens in a spreadsheet) or JSON lines, produced row by row (flat memory)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

import msgspec

from api.schemas import AuditRowOut

BOM = "\ufeff"  # so a spreadsheet reads the file as UTF-8
HEADER = ("position", "time", "actor", "actor_name", "action", "subject_kind", "subject_id", "subject_name",
          "summary", "request_id")  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would evaluate these (OWASP CSV injection)
ROWS_PER_CHUNK = 500


def safe_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: a leading formula character is escaped with ``'``."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(rows: Iterable[AuditRowOut]) -> Iterator[str]:
    """The header (after a BOM), then the rows, a few hundred per chunk; times in ISO 8601."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(HEADER)
    yield BOM + _take(buffer)
    for count, row in enumerate(rows, 1):
        writer.writerow([safe_cell(row.position), row.time.isoformat(), *map(safe_cell, _cells(row))])
        if count % ROWS_PER_CHUNK == 0:
            yield _take(buffer)
    tail = _take(buffer)
    if tail:
        yield tail


def jsonl_lines(rows: Iterable[AuditRowOut]) -> Iterator[bytes]:
    """One JSON object per line, a few hundred lines per chunk."""
    encoder = msgspec.json.Encoder()
    chunk = bytearray()
    for count, row in enumerate(rows, 1):
        encoder.encode_into(row, chunk, -1)
        chunk += b"\n"
        if count % ROWS_PER_CHUNK == 0:
            yield bytes(chunk)
            chunk.clear()
    if chunk:
        yield bytes(chunk)


def _cells(row: AuditRowOut) -> list[object]:
    return [row.actor, row.actor_name, row.action, row.subject_kind, row.subject_id, row.subject_name, row.summary,
            row.request_id]  # fmt: skip


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
