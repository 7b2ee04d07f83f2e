"""Where the stores are: the event store's settings, the subject-key store, the API-key pepper, and the
reaction runner with its per-handler locks (SQLite beside the file, PostgreSQL by advisory lock)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from eventsourcing.utils import get_topic

from api.secret_files import PEPPER_HINT, SecretFileError, pepper_problem, private_file, read_or_create_secret
from api.settings import Settings
from domain.adapters.key_stores import PostgresKeyStore, SQLiteKeyStore
from domain.adapters.postgres_recorder import OneTripPostgresApplicationRecorder, OneTripPostgresProcessRecorder
from domain.adapters.snapshots import PostgresFactory, SQLiteFactory
from domain.adapters.sqlite_transactions import begin_writes_immediately
from domain.application import OwnLLM
from domain.sealing import KeyStore
from projections.handler_locks import FileLocks, PostgresLocks
from projections.log import NotificationLog
from projections.reactions import HandlerLock, ReactionRunner
from projections.status import FailureLog, failure_log_for


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing persistence settings for SQLite (embedded) or PostgreSQL."""
    if settings.persistence == "sqlite":
        private_file(settings.sqlite_file)  # 0600 before SQLite writes to it (its -wal/-shm follow its mode)
        begin_writes_immediately()  # concurrent writers wait instead of failing "database is locked"
        return {"PERSISTENCE_MODULE": get_topic(SQLiteFactory), "SQLITE_DBNAME": settings.sqlite_file}
    from psycopg.conninfo import conninfo_to_dict

    dsn = conninfo_to_dict(settings.postgres_dsn)
    return {
        "PERSISTENCE_MODULE": get_topic(PostgresFactory),  # eventsourcing's, with OwnLLM's snapshot recorder
        "POSTGRES_DBNAME": str(dsn.get("dbname", "ownllm")),
        "POSTGRES_HOST": str(dsn.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(dsn.get("port", "5432")),
        "POSTGRES_USER": str(dsn.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(dsn.get("password", "")),
        "POSTGRES_SCHEMA": settings.postgres_schema,
        "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
        # One round trip per save: OwnLLM's recorder (events, and reactions' tracking) and any plain one.
        "PROCESS_RECORDER_TOPIC": get_topic(OneTripPostgresProcessRecorder),
        "APPLICATION_RECORDER_TOPIC": get_topic(OneTripPostgresApplicationRecorder),
        # Never POSTGRES_ENABLE_DB_FUNCTIONS: with it, notification ids interleaved under concurrent writers.
    }


def key_store(settings: Settings) -> KeyStore:
    """Subject keys outside the event stream: their own SQLite file, or their own PostgreSQL table."""
    if settings.persistence == "sqlite":
        return SQLiteKeyStore(str(private_file(os.path.join(settings.var_dir, "subject-keys.sqlite"))))
    # Production: OWNLLM_KEYS_DSN puts the keys in a database of their own (separate backups, see README).
    return PostgresKeyStore(settings.keys_dsn or settings.postgres_dsn, settings.postgres_schema)


def pepper(settings: Settings) -> bytes:
    """The API-key hashing pepper: from settings in production, a var/ file in the embedded setup."""
    if settings.key_pepper:
        value, source = settings.key_pepper, "OWNLLM_KEY_PEPPER"
    else:
        path = Path(settings.var_dir) / "secrets" / "key-pepper"
        value, source = read_or_create_secret(path), str(path)
    problem = pepper_problem(value)
    if problem:
        raise SecretFileError(f"the API-key pepper ({source}) {problem}; {PEPPER_HINT}")
    return value.encode()  # as given: stripping would change the hashes of a deployed pepper


def reaction_runner(settings: Settings, app: OwnLLM, failures: FailureLog | None = None) -> ReactionRunner:
    """The reaction runner over the app's log; handlers are added by what the process runs."""
    return ReactionRunner(
        app=app,
        log=NotificationLog(app.recorder),  # by topic through the topic index
        positions=cast(Any, app.recorder),
        reactions=[],
        locks=handler_locks(settings),
        status=failures or failure_log_for(app.recorder),
    )


def handler_locks(settings: Settings) -> HandlerLock:
    """One runner per handler: a file lock beside the SQLite store, or a PostgreSQL advisory lock."""
    if settings.persistence == "sqlite":
        return FileLocks(Path(settings.sqlite_file).absolute().parent / "reaction-locks")
    return PostgresLocks(settings.postgres_dsn)
