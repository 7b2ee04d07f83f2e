"""The OpenAI-compatible inference proxy: ``/v1`` routes that send jobs to the tenant's agents over NATS.

Compose it with ``InferenceGateway(settings, authenticator, usage_sink)``: ``await start()`` at app
startup, ``await stop()`` at shutdown, and mount ``router()``.
"""

from api.proxy.gateway import InferenceGateway
from api.proxy.ports import Authenticator, UsageSink

__all__ = ["Authenticator", "InferenceGateway", "UsageSink"]
