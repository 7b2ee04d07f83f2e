"""A real PostgreSQL for tests: the local server when it answers, else a throwaway cluster."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

_CLUSTER_DATA: dict[str, Path] = {}  # a throwaway cluster's DSN -> its data directory, for restart_cluster

LOCAL_DSN = os.environ.get("OWNLLM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary from the installed version."""
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """initdb + pg_ctl a cluster in a temp dir on a free port (as user postgres when we are root)."""
    workdir = Path(tempfile.mkdtemp(prefix="ownllm-pg-"))
    data, port = workdir / "data", _free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(workdir, "postgres")
    subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-w", "start",
                    "-l", str(workdir / "log")], check=True, capture_output=True)  # fmt: skip
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    _CLUSTER_DATA[dsn] = data
    try:
        yield dsn
    finally:
        _CLUSTER_DATA.pop(dsn, None)
        subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(workdir, ignore_errors=True)


def restart_cluster(dsn: str) -> None:
    """``pg_ctl restart -m fast`` a cluster of ``throwaway_cluster`` (never the shared server):
    every open connection is cut."""
    data = _CLUSTER_DATA[dsn]
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "restart",
                    "-l", str(data.parent / "log")], check=True, capture_output=True)  # fmt: skip


@contextlib.contextmanager
def server_dsn() -> Iterator[str]:
    """The DSN of a reachable PostgreSQL server (maintenance database)."""
    if _answers(LOCAL_DSN):
        yield LOCAL_DSN
    else:
        with throwaway_cluster() as dsn:
            deadline = time.monotonic() + 30
            while not _answers(dsn) and time.monotonic() < deadline:
                time.sleep(0.2)
            yield dsn


@contextlib.contextmanager
def throwaway_database(server: str) -> Iterator[str]:
    """A fresh database for this test run, dropped afterwards."""
    name = f"ownllm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_schema(dsn: str) -> str:
    """A new empty schema (one per test) in the run's database."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema
