"""Shared fixtures for the agent tests."""

from collections.abc import AsyncIterator

import pytest

from tests.agent.fake_upstream import OPENED
from tests.support.nats import nats_server_factory

__all__ = ["nats_server_factory"]


@pytest.fixture(autouse=True)
async def close_backends() -> AsyncIterator[None]:
    """Close every relay backend a test opened (``backend_for``), its connection pools included."""
    yield
    while OPENED:
        await OPENED.pop().aclose()
