"""Bad input on every endpoint: a clear 4xx in the problem shape, never a 500, nothing written."""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import schemas
from tests.support.api_client import Api
from tests.support.terms import TERMS

USER = "00000000-0000-4000-8000-000000000001"
ENDPOINTS: list[tuple[str, str, type[msgspec.Struct] | None]] = [
    ("POST", "/api/v1/tenants", schemas.SignupRequest),
    ("POST", "/api/v1/invites", schemas.InviteRequest),
    ("POST", "/api/v1/invites/accept", schemas.AcceptInviteRequest),
    ("POST", f"/api/v1/users/{USER}/role", schemas.RoleChangeRequest),
    ("POST", f"/api/v1/users/{USER}/suspend", schemas.ReasonRequest),
    ("POST", f"/api/v1/users/{USER}/reinstate", schemas.ReasonRequest),
    ("POST", "/api/v1/keys", schemas.IssueKeyRequest),
    ("POST", "/api/v1/agents/pair", schemas.PairRequest),
    ("POST", "/api/v1/pairing-keys", None),
]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=50),
    st.text(min_size=1001, max_size=1200),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=8,
)


def bodies(struct: type[msgspec.Struct] | None) -> st.SearchStrategy[Any]:
    """Objects with the struct's own field names holding wrong, huge or odd values, plus strangers."""
    names = list(struct.__struct_fields__) if struct else ["x"]
    known = st.dictionaries(st.sampled_from(names), json_values, max_size=len(names))
    stranger = st.dictionaries(st.text(min_size=1, max_size=12), json_values, min_size=1, max_size=2)
    return st.one_of(known, st.builds(lambda a, b: {**a, **b}, known, stranger), json_values)


def check_problem(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == response.status_code


@pytest.mark.parametrize(("method", "path", "struct"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_fuzzed_bodies_never_break_the_api(
    api: Api, method: str, path: str, struct: type[msgspec.Struct] | None
) -> None:
    admin_key = api.signup("fuzzed")["api_key"]["secret"]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies(struct))
    def run(body: Any) -> None:
        before = api.services.app.recorder.max_notification_id()
        response = api.call(
            method, path, admin_key, content=json.dumps(body), headers={"content-type": "application/json"}
        )
        if response.status_code < 400:  # a valid body by chance: fine, it must be a success
            assert response.status_code in (200, 201), response.text
            return
        check_problem(response)
        assert api.services.app.recorder.max_notification_id() == before, "a refused request wrote events"

    run()


def well_typed(struct: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Bodies that match the struct's types (not its constraints): they reach the domain rules."""
    hints = typing.get_type_hints(struct)
    fields = {name: st.from_type(hints[name]) for name in struct.__struct_fields__}
    return st.builds(struct, **fields).map(msgspec.to_builtins)


TYPED = [(m, p, s) for m, p, s in ENDPOINTS if s is not None]


@pytest.mark.parametrize(("method", "path", "struct"), TYPED, ids=[e[1] for e in TYPED])
def test_well_typed_bodies_get_an_answer_never_a_500(
    api: Api, method: str, path: str, struct: type[msgspec.Struct]
) -> None:
    admin_key = api.signup("typed")["api_key"]["secret"]

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=well_typed(struct))
    def run(body: Any) -> None:
        before = api.services.app.recorder.max_notification_id()
        response = api.call(method, path, admin_key, json=body)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            check_problem(response)
            assert api.services.app.recorder.max_notification_id() == before, "a refused request wrote events"

    run()


@pytest.mark.parametrize("raw", [b"{", b"[1,", b"\xff\xfe", b"null", b'{"slug": "abc", }', b"x" * 100])
def test_malformed_json_is_a_400_naming_the_problem(api: Api, raw: bytes) -> None:
    response = api.call("POST", "/api/v1/tenants", content=raw, headers={"content-type": "application/json"})
    check_problem(response)
    assert response.status_code in (400, 422)


def test_unknown_fields_and_wrong_types_name_the_field(api: Api) -> None:
    body = {"slug": "fields", "name": "n", "admin_name": "a", "admin_email": "a@b.example", "accept_terms": TERMS}
    unknown = api.call("POST", "/api/v1/tenants", json={**body, "plan": "free"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "plan"
    wrong = api.call("POST", "/api/v1/tenants", json={**body, "name": 42})
    assert wrong.status_code == 422 and wrong.json()["field"] == "name"
    long = api.call("POST", "/api/v1/tenants", json={**body, "admin_name": "x" * 201})
    assert long.status_code == 422 and long.json()["field"] == "admin_name"


def test_a_body_over_one_mebibyte_is_a_413(api: Api) -> None:
    response = api.call("POST", "/api/v1/tenants", content=b"[" + b"1," * 600_000 + b"1]",
                        headers={"content-type": "application/json"})  # fmt: skip
    check_problem(response)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/users/not-a-uuid"), ("DELETE", "/api/v1/keys/123"), ("GET", "/api/v1/usage?since=yesterday"),
     ("GET", "/api/v1/nope"), ("PUT", "/api/v1/tenants")],
)  # fmt: skip
def test_bad_paths_and_queries_are_problems(api: Api, method: str, path: str) -> None:
    admin_key = api.signup("paths")["api_key"]["secret"]
    check_problem(api.call(method, path, admin_key))


@pytest.mark.parametrize("header", ["", "Bearer", "Basic abc", "Bearer ollm_wrong", "Bearer " + "x" * 5000])
def test_bad_credentials_are_401_problems(api: Api, header: str) -> None:
    response = api.client.get("/api/v1/me", headers={"Authorization": header} if header else {})
    check_problem(response)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


DEEP = [b"[" * 1_000_000, b'{"slug": ' + b"[" * 500_000, b'{"a":' * 200_000]


@pytest.mark.parametrize("raw", DEEP, ids=["brackets", "in-a-field", "objects"])
def test_deeply_nested_json_is_a_400_not_a_500(api: Api, raw: bytes) -> None:
    """msgspec raises RecursionError (not DecodeError) past its depth: still malformed input."""
    admin = api.signup("deep")["api_key"]["secret"]
    before = api.services.app.recorder.max_notification_id()
    for key, path in [(None, "/api/v1/tenants"), (admin, "/api/v1/keys"), (admin, "/api/v1/invites")]:
        response = api.call("POST", path, key, content=raw, headers={"content-type": "application/json"})
        check_problem(response)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["type"].endswith("/malformed-body"), response.text
    assert api.services.app.recorder.max_notification_id() == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "application/xml", "text/json"],
)
def test_a_body_not_declared_as_json_is_a_415(api: Api, content_type: str) -> None:
    admin = api.signup("declared")["api_key"]["secret"]
    before = api.services.app.recorder.max_notification_id()
    signup = {
        "slug": "sneaky",
        "name": "S",
        "admin_name": "A",
        "admin_email": "a@sneaky.example",
        "accept_terms": TERMS,
    }
    key = {"name": "k", "scopes": ["inference"]}
    for secret, path, body in [(None, "/api/v1/tenants", signup), (admin, "/api/v1/keys", key)]:
        response = api.call("POST", path, secret, content=json.dumps(body), headers={"content-type": content_type})
        check_problem(response)
        assert response.status_code == 415, (path, response.text)
        assert "application/json" in response.json()["detail"]
    assert api.services.app.recorder.max_notification_id() == before  # nothing was served


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None])
def test_json_declared_or_undeclared_is_served(api: Api, content_type: str | None) -> None:
    body = json.dumps(
        {"slug": "plainjson", "name": "P", "admin_name": "A", "admin_email": "a@p.example", "accept_terms": TERMS}
    )
    headers = {"content-type": content_type} if content_type else {}
    response = api.call("POST", "/api/v1/tenants", content=body, headers=headers)
    assert response.status_code == 201, response.text
