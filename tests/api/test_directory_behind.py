"""Fail closed: while the directory cannot catch up with the events, no key is trusted (503)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from api.auth import DIRECTORY_MAX_BEHIND_S, KeyAuthenticator
from api.settings import Settings
from projections.directory import Directory
from tests.support.api_client import Api


def test_the_management_api_answers_503_while_the_directory_is_behind_and_recovers(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = api.signup("stale")["api_key"]["secret"]
    assert api.call("GET", "/api/v1/me", key).status_code == 200
    runner = api.services.runner
    assert runner.seconds_behind() < DIRECTORY_MAX_BEHIND_S

    def store_down() -> int:
        raise RuntimeError("the event store is unreachable")

    monkeypatch.setattr(runner.log, "head", store_down)  # every poll fails from now on
    with runner._memory_lock:  # a poll that read the head just before ends first (it would mark it caught up)
        runner.caught_up_at = time.monotonic() - DIRECTORY_MAX_BEHIND_S - 1  # as if they had for 31 s
    answer = api.call("GET", "/api/v1/me", key)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5" and "behind the event store" in answer.json()["detail"]
    assert api.call("GET", "/api/v1/me", "ollm_" + "x" * 43).status_code == 503  # whatever the key

    monkeypatch.undo()  # the store is back: the next catch-up trusts the directory again
    runner.catch_up()
    assert api.call("GET", "/api/v1/me", key).status_code == 200


def test_the_inference_proxy_answers_503_while_the_directory_is_behind(tmp_path: Path) -> None:
    from api.proxy import InferenceGateway

    behind = KeyAuthenticator(Directory(), b"p" * 43, directory_behind_s=lambda: DIRECTORY_MAX_BEHIND_S + 1)
    settings = Settings(var_dir=str(tmp_path / "var"), nats_url="nats://127.0.0.1:1")
    gateway = InferenceGateway(settings, behind, lambda **fields: None)
    with TestClient(Litestar(route_handlers=[gateway.router()])) as client:
        answer = client.get("/v1/models", headers={"Authorization": "Bearer ollm_" + "x" * 43})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["type"] == "server_error" and answer.headers["Retry-After"] == "5"
