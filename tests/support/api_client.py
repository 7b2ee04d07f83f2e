"""An in-process HTTP client on a fully wired app, reading like the story it tells."""

from __future__ import annotations

from typing import Any

import httpx
from litestar.testing import TestClient

from api.services import Services
from tests.support.clock import ManualClock
from tests.support.terms import TERMS


class Api:
    """A thin client over the in-process app: ``api.call("GET", path, key)``."""

    def __init__(self, client: TestClient[Any], services: Services, clock: ManualClock) -> None:
        self.client = client
        self.services = services
        self.clock = clock

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def signup(
        self, slug: str, email: str = "admin@example.com", name: str = "Admin", org: str | None = None
    ) -> dict[str, Any]:
        body = {"slug": slug, "name": org or slug.title(), "admin_name": name, "admin_email": email,
                "accept_terms": TERMS}  # fmt: skip
        response = self.call("POST", "/api/v1/tenants", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]
