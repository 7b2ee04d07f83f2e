"""The contract around the API: every route documented, settings that name what is wrong."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from uuid import uuid4

import pytest
from litestar.testing import TestClient

from api.auth import KeyAuthenticator
from api.principal import Principal
from api.settings import Settings, SettingsError, load_settings
from policies.limits import DEFAULT_PLAN, FALLBACK_PLAN, PLAN_LIMITS, limits_for
from tests.support.api_client import Api

README = Path(__file__).resolve().parents[2] / "README.md"


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


def readme_settings() -> dict[str, str]:
    """Variable -> documented default, from the README's settings table (``_X`` cells extend the row's stem)."""
    table = README.read_text().split("### Settings", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, str] = {}
    for line in table.splitlines():
        if not line.startswith("| `OWNLLM_"):
            continue
        names_cell, default_cell = (cell.strip() for cell in line.strip().strip("|").split("|")[:2])
        names = re.findall(r"`([A-Z_]+)`", names_cell)
        stem = "_".join(names[0].split("_")[:2])
        for name in names:
            documented[name if name.startswith("OWNLLM_") else stem + name] = default_cell
    return documented


def test_every_setting_the_readme_documents_exists() -> None:
    documented = readme_settings()
    assert len(documented) >= 20
    known = {"OWNLLM_" + name.upper() for name in Settings.__struct_fields__}
    assert set(documented) <= known, sorted(set(documented) - known)


def test_the_default_plan_has_one_source() -> None:
    assert readme_settings()["OWNLLM_DEFAULT_PLAN"] == f"`{DEFAULT_PLAN}`"
    assert load_settings({}).default_plan == DEFAULT_PLAN
    assert Principal(uuid4(), uuid4(), uuid4(), "member", frozenset()).plan == DEFAULT_PLAN
    assert inspect.signature(KeyAuthenticator).parameters["default_plan"].default == DEFAULT_PLAN
    # An unknown plan name still gets the smallest tier, not the default one (fail closed).
    assert limits_for("no-such-plan") is PLAN_LIMITS[FALLBACK_PLAN] is not PLAN_LIMITS[DEFAULT_PLAN]
