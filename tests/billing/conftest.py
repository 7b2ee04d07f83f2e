"""A fully wired app with billing's webhook secret configured."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.services import Services, build_services
from api.settings import Settings
from tests.support.api_client import Api
from tests.support.clock import ManualClock
from tests.support.stripe_events import SECRET


@pytest.fixture
def billing_services(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Services]:
    built = build_services(make_settings(stripe_webhook_secret=SECRET), clock=clock)
    yield built
    built.close()


@pytest.fixture
def billing_api(billing_services: Services, clock: ManualClock) -> Iterator[Api]:
    with TestClient(create_app(billing_services.settings, billing_services)) as client:
        yield Api(client, billing_services, clock)
