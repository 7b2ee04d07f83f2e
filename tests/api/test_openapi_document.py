"""The OpenAPI document, fetched from the app: /v1 bodies as they are, and which routes need a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.proxy.schemas import ChatCompletionRequest, CompletionRequest
from api.services import build_services
from api.settings import Settings
from tests.support.clock import ManualClock

# verifier keys: anyone may verify; Stripe's webhook is authenticated by Stripe's signature, not a key
PUBLIC = {
    "signupTenant", "acceptInvite", "pairAgent", "health", "auditPublicKey", "stripeWebhook",
    "listLegalDocuments", "getLegalDocument",  # what a signup accepts must be readable before it
}  # fmt: skip
BEARER = [{"apiKey": []}]


@pytest.fixture
def persistence() -> str:
    return "sqlite"  # the document does not depend on the store


@pytest.fixture
def document(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[dict[str, Any]]:
    """The app with the /v1 proxy mounted (not started: the document needs no NATS)."""
    services = build_services(make_settings(inference=True, nats_url="nats://127.0.0.1:9"), clock=clock)
    try:
        response = TestClient(create_app(services.settings, services)).get("/schema/openapi.json")
        assert response.status_code == 200
        yield response.json()
    finally:
        services.close()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op
        for item in document["paths"].values()
        for method, op in item.items()
        if method not in ("parameters", "servers")
    }


def test_public_routes_need_no_key_and_every_other_route_says_it_does(document: dict[str, Any]) -> None:
    assert "security" not in document  # nothing document-wide: each operation says what it needs
    assert "apiKey" in document["components"]["securitySchemes"]
    ops = operations(document)
    assert set(ops) >= PUBLIC
    for operation_id, op in ops.items():
        if operation_id in PUBLIC:
            assert op.get("security", []) == [], operation_id
        else:
            assert op.get("security") == BEARER, operation_id
    assert {"listModels", "createChatCompletion"} <= {i for i, op in ops.items() if op.get("security") == BEARER}


def test_the_model_list_and_model_are_objects_not_strings(document: dict[str, Any]) -> None:
    ops = operations(document)
    listing = ops["listModels"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["type"] == "object" and listing["properties"]["data"]["type"] == "array"
    model = listing["properties"]["data"]["items"]
    assert {"id", "created", "owned_by", "object"} <= set(model["properties"])
    assert model["properties"]["id"] == {"type": "string"}
    one = ops["retrieveModel"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert one["required"] == model["required"] and "id" in one["required"]


@pytest.mark.parametrize(
    ("operation_id", "struct", "answer_object"),
    [("createChatCompletion", ChatCompletionRequest, "chat.completion"), ("createCompletion", CompletionRequest,
                                                                          "text_completion")],
)  # fmt: skip
def test_the_generation_posts_document_the_body_the_gateway_decodes(
    document: dict[str, Any], operation_id: str, struct: type, answer_object: str
) -> None:
    op = operations(document)[operation_id]
    body = op["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == set(struct.__struct_fields__)
    without_default = len(struct.__struct_fields__) - len(struct.__struct_defaults__)  # msgspec puts them first
    assert set(schema["required"]) == set(struct.__struct_fields__[:without_default]) != set()
    assert schema["additionalProperties"] is False  # unknown fields are refused
    answers = op["responses"]["200"]["content"]
    assert answers["application/json"]["schema"]["properties"]["object"]["default"] == answer_object
    assert "text/event-stream" in answers and "data: [DONE]" in answers["text/event-stream"]["schema"]["description"]


def test_the_chat_body_describes_its_messages(document: dict[str, Any]) -> None:
    schema = operations(document)["createChatCompletion"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "messages"} <= set(schema["required"])
    message = schema["properties"]["messages"]["items"]
    assert "user" in message["properties"]["role"]["enum"] and message["required"] == ["role"]


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(document))
    assert found
    for ref in found:
        target: Any = document
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            target = target[part]
        assert isinstance(target, dict), ref
