"""Shared fixtures for the agent tests."""

from tests.support.nats import nats_server_factory

__all__ = ["nats_server_factory"]
