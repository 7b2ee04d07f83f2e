"""Handlers get the caller and typed services by injection; none of that reaches the OpenAPI document."""

from __future__ import annotations

from tests.support.api_client import Api


def test_injected_names_are_not_documented_as_parameters(api: Api) -> None:
    injected = set(api.client.app.dependencies)
    assert {"principal", "ctx", "commands", "directory", "usage"} <= injected
    schema = api.client.get("/schema/openapi.json").json()
    documented = {
        parameter["name"]
        for item in schema["paths"].values()
        for method, op in item.items()
        if method != "parameters"
        for parameter in op.get("parameters", [])
    }
    assert {"all_users", "limit", "after", "reason", "since", "until"} <= documented
    # The audit log's filter is a query parameter called request_id (aliased in the handler, since
    # the injected request_id is the current request's): documented there only, and deliberately.
    filtering = {
        path for path, item in schema["paths"].items() for op in item.values() if isinstance(op, dict)
        for parameter in op.get("parameters", []) if parameter["name"] == "request_id"
    }  # fmt: skip
    assert filtering == {"/api/v1/audit", "/api/v1/audit/export"}
    assert injected.isdisjoint(documented - {"request_id"})
