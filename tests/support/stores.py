"""Read back everything a store holds, to prove what is (and is not) in it."""

from __future__ import annotations

from pathlib import Path

import psycopg

from api.settings import Settings


def store_bytes(settings: Settings) -> bytes:
    """Everything the event store holds, as bytes: the SQLite files, or a COPY dump of every table."""
    if settings.persistence == "sqlite":
        files = Path(settings.sqlite_file).parent.glob(Path(settings.sqlite_file).name + "*")
        return b"".join(path.read_bytes() for path in files)
    dump = bytearray()
    with psycopg.connect(settings.postgres_dsn) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (settings.postgres_schema,)
        ).fetchall()
        for (table,) in tables:
            with conn.cursor().copy(f'COPY "{settings.postgres_schema}"."{table}" TO STDOUT') as copy:
                for chunk in copy:
                    dump += bytes(chunk)
    return bytes(dump)


def holds(raw: bytes, text: str) -> bool:
    """Whether the dump holds ``text`` as bytes or as PostgreSQL's hex rendering of bytea."""
    return text.encode() in raw or text.encode().hex().encode() in raw
