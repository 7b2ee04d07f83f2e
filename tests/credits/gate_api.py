"""One API process for the credit-gate test: the real services on PostgreSQL and the gateway with its
credit check, behind uvicorn. argv[1] is JSON: settings fields, port, tenant id and the key secret.
Prints ``ready`` once serving."""

from __future__ import annotations

import json
import sys
from uuid import UUID, uuid4

import uvicorn
from litestar import Litestar

from api.auth import CredentialsRejected
from api.principal import Principal
from api.proxy import InferenceGateway
from api.proxy.balance import CreditGate
from api.services import build_services
from api.settings import load_settings
from api.usage_store import usage_writer


def main(config: dict[str, object]) -> None:
    settings = load_settings({}, **config["settings"])  # type: ignore[arg-type]
    services = build_services(settings)
    principal = Principal(
        UUID(str(config["tenant"])), uuid4(), uuid4(), "member", frozenset({"inference"}), "enterprise"
    )

    class Keys:
        def authenticate(self, secret: str) -> Principal:
            if secret != config["secret"]:
                raise CredentialsRejected(401, "invalid_api_key", "Incorrect API key provided.")
            return principal

    gateway = InferenceGateway(
        settings, Keys(), usage_writer(settings, services.app), credits=CreditGate(services.credits)
    )
    app = Litestar([gateway.router()], on_startup=[gateway.start], on_shutdown=[gateway.stop, services.close])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(config["port"]), log_level="warning"))  # type: ignore[call-overload]
    print("ready", flush=True)
    server.run()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
