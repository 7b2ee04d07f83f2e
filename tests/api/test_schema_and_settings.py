"""The contract around the API: every route documented, settings that name what is wrong."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from api.settings import SettingsError, load_settings
from tests.support.api_client import Api


def test_every_route_has_an_operation_id_and_a_description(api: Api) -> None:
    schema = api.client.get("/schema/openapi.json").json()
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    ]
    assert len(operations) >= 20
    for path, method, op in operations:
        assert op.get("operationId"), (method, path)
        assert op.get("description") or op.get("summary"), (method, path)
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids)), "operation ids must be unique"
    assert api.client.get("/schema").status_code == 200  # the browsable UI


def test_the_docs_ui_and_health_need_no_key(api: Api) -> None:
    client: TestClient = api.client  # type: ignore[type-arg]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/schema/swagger").status_code == 200


def test_settings_come_from_ownllm_variables() -> None:
    settings = load_settings({"OWNLLM_PORT": "9001", "OWNLLM_PERSISTENCE": "sqlite", "HOME": "/x"})
    assert settings.port == 9001
    assert settings.base_url == "http://127.0.0.1:9001"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OWNLLM_PROT": "1"}, "OWNLLM_PROT"),
        ({"OWNLLM_PORT": "eighty"}, "OWNLLM_PORT"),
        ({"OWNLLM_PERSISTENCE": "mysql"}, "OWNLLM_PERSISTENCE"),
        ({"OWNLLM_PERSISTENCE": "postgres"}, "OWNLLM_POSTGRES_DSN"),
    ],
)
def test_a_bad_or_unknown_variable_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environ)


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
