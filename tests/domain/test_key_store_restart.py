"""The PostgreSQL subject-key store survives a restart of its server (a throwaway cluster of our own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from api.services import Services, build_services
from api.settings import load_settings
from tests.support.postgres import restart_cluster, throwaway_cluster


@pytest.fixture
def own_cluster() -> Iterator[str]:
    with throwaway_cluster() as dsn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        yield dsn


@pytest.fixture
def services_on_own_cluster(own_cluster: str, tmp_path: Path) -> Iterator[Services]:
    settings = load_settings(
        {}, var_dir=str(tmp_path / "var"), inference=False, persistence="postgres", postgres_dsn=own_cluster
    )
    services = build_services(settings, start_runner=False)
    yield services
    services.close()


def test_subject_keys_are_created_and_read_after_a_postgresql_restart(
    services_on_own_cluster: Services, own_cluster: str
) -> None:
    keys = services_on_own_cluster.keys
    existing = uuid4()
    key = keys.key_for(existing, create=True)

    restart_cluster(own_cluster)  # cuts the store's connection

    keys._cache.clear()  # read from the database, not from memory
    assert keys.key_for(existing, create=False) == key
    new = uuid4()
    created = keys.key_for(new, create=True)
    assert created is not None and created != key

    restart_cluster(own_cluster)

    keys.destroy(new)
    keys._cache.clear()
    assert (keys.key_for(new, create=False), keys.key_for(existing, create=False)) == (None, key)


def test_commands_and_projections_go_on_after_a_postgresql_restart(
    services_on_own_cluster: Services, own_cluster: str
) -> None:
    services = services_on_own_cluster
    app = services.app

    def signup(slug: str) -> None:
        services.command(
            app.signup, slug=slug, name=slug, admin_name=f"Admin {slug}", admin_email=f"{slug}@example.com",
            request_id=f"req-{slug}",
        )  # fmt: skip

    signup("before")
    restart_cluster(own_cluster)
    services.keys._cache.clear()  # the runner must unseal from the database again
    signup("after")
    services.runner.catch_up()
    assert sorted(u.email for u in services.directory.users.values()) == ["after@example.com", "before@example.com"]
