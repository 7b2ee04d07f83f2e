"""Two processes writing one SQLite store: a write that reads first must wait, never fail "database is locked"."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventsourcing.sqlite import SQLiteDatastore

from api.settings import load_settings
from api.stores import eventsourcing_env
from domain.adapters.sqlite_transactions import begin_writes_immediately, library_behaviour


def read_then_write_from_three_stores(path: Path, rounds: int = 300) -> list[str]:
    """Three datastores (as three processes would hold) each check a count, then write, in one transaction."""
    stores = [SQLiteDatastore(str(path), pool_size=2) for _ in range(3)]
    with stores[0].transaction(commit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    errors: list[str] = []

    def work(store: SQLiteDatastore) -> None:
        for _ in range(rounds):
            try:
                with store.transaction(commit=True) as c:
                    c.execute("SELECT count(*) FROM t")
                    c.fetchall()
                    c.execute("INSERT INTO t VALUES (1)")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with stores[0].transaction(commit=False) as c:
        c.execute("SELECT count(*) FROM t")
        assert c.fetchone()[0] == 3 * rounds - len(errors)
    for store in stores:
        store.close()
    return errors


@pytest.fixture
def deferred_begin() -> Iterator[None]:
    library_behaviour()
    yield
    begin_writes_immediately()


def test_the_librarys_deferred_begin_fails_concurrent_writers(tmp_path: Path, deferred_begin: None) -> None:
    errors = read_then_write_from_three_stores(tmp_path / "deferred.sqlite")
    assert errors and all("database is locked" in e for e in errors)  # why the product changes it


def test_the_sqlite_store_makes_concurrent_writers_wait(tmp_path: Path) -> None:
    eventsourcing_env(load_settings({}, var_dir=str(tmp_path / "var"), inference=False))  # what build_services does
    assert read_then_write_from_three_stores(tmp_path / "immediate.sqlite") == []
