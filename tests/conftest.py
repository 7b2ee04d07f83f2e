"""Fixtures shared by every test package: settings on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.services import Services, build_services
from api.settings import Settings, load_settings
from tests.support.api_client import Api
from tests.support.clock import ManualClock
from tests.support.postgres import create_schema, server_dsn, throwaway_database


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A database of this test run on a real PostgreSQL server (never skipped)."""
    with server_dsn() as server, throwaway_database(server) as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def persistence(request: pytest.FixtureRequest) -> str:
    """Run the test once per event store."""
    return str(request.param)


PUBLIC_NATS = "tls://nats.ownllm.test:4222"


@pytest.fixture
def make_settings(persistence: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Settings]:
    """Settings for the parametrised store, in a private var dir (and schema on PostgreSQL)."""
    # inference off: no NATS here, so pairing needs the URL agents would be told (api/settings.agent_nats_url)
    extra: dict[str, Any] = {"var_dir": str(tmp_path / "var"), "inference": False, "nats_public_url": PUBLIC_NATS}
    if persistence == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        extra |= {"persistence": "postgres", "postgres_dsn": dsn, "postgres_schema": create_schema(dsn)}

    def make(**overrides: Any) -> Settings:
        settings = extra | overrides
        if overrides.get("inference") and "nats_public_url" not in overrides:
            del settings["nats_public_url"]  # the embedded nats-server: agents are told its loopback URL
        return load_settings({}, **settings)

    return make


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def services(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Services]:
    built = build_services(make_settings(), clock=clock)
    yield built
    built.close()  # its runners' threads would otherwise keep its database connections open for the whole run


@pytest.fixture
def api(services: Services, clock: ManualClock) -> Iterator[Api]:
    app = create_app(services.settings, services)
    with TestClient(app) as client:
        yield Api(client, services, clock)
