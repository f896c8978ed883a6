"""The lean way through the metering endpoints: taken by the requests it can answer, and
FastAPI's answer (the same errors, the same bodies) for every other request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from creditmeter import CreditMeter
from creditmeter.api.lean import LeanRoute
from creditmeter.api.routers import metering
from tests.api.conftest import Keys

LEAN = {"/v1/holds", "/v1/holds/{hold_id}/settle", "/v1/holds/{hold_id}/release", "/v1/usage"}


@pytest.fixture
def by_fastapi(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests FastAPI answered rather than the lean way."""
    paths: list[str] = []
    handle = APIRoute.handle

    async def counted(route: APIRoute, scope: Scope, receive: Receive, send: Send) -> None:
        paths.append(scope["path"])
        await handle(route, scope, receive, send)

    monkeypatch.setattr(APIRoute, "handle", counted)
    return paths


@pytest.fixture
def service(meter: CreditMeter, keys: Keys) -> dict[str, str]:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.grant("acme", 1_000, source="purchase")
    return keys.header("service")


def hold_body(**extra: Any) -> dict[str, Any]:
    return {"account": "acme", "feature": "chat", "estimate": {"tokens": 100}, **extra}


def test_the_hot_routes_are_lean_and_routes_with_other_dependencies_are_not() -> None:
    routes = [r for r in metering.router.routes if isinstance(r, LeanRoute)]
    lean = {r.path for r in routes if r.plan is not None}
    assert lean >= LEAN
    assert "/v1/accounts/{account_id}/check" not in lean  # an account-scoped admission
    assert "/v1/holds/{hold_id}" not in lean  # a GET


def test_a_pair_goes_the_lean_way(
    client: TestClient, service: dict[str, str], by_fastapi: list[str]
) -> None:
    held = client.post("/v1/holds", json=hold_body(), headers={**service, "Idempotency-Key": "a"})
    assert held.status_code == 200
    hold = held.json()["id"]
    settle = {"usage": {"tokens": 80}}
    settled = client.post(f"/v1/holds/{hold}/settle", json=settle, headers=service)
    assert settled.status_code == 200
    assert by_fastapi == []


def test_a_retry_answered_by_fastapi_is_the_lean_answer_byte_for_byte(
    client: TestClient, service: dict[str, str], by_fastapi: list[str]
) -> None:
    headers = {**service, "Idempotency-Key": "k1"}
    lean = client.post("/v1/holds", json=hold_body(), headers=headers)
    charset = {**headers, "Content-Type": "application/json; charset=utf-8"}
    full = client.post("/v1/holds", content=json.dumps(hold_body()), headers=charset)
    assert by_fastapi == ["/v1/holds"]
    assert (full.status_code, full.content) == (lean.status_code, lean.content)
    assert full.headers["content-type"] == lean.headers["content-type"]


def test_a_refusal_the_lean_way_is_the_contract_s_402(
    client: TestClient, service: dict[str, str], by_fastapi: list[str]
) -> None:
    refused = client.post("/v1/holds", json=hold_body(estimate={"tokens": 5_000}), headers=service)
    assert refused.status_code == 402
    assert refused.json()["error"]["type"] == "insufficient_credits"
    assert by_fastapi == []


@pytest.mark.parametrize(
    ("content", "headers", "status", "kind"),
    [
        ("{not json", {}, 400, "malformed_json"),
        ("[" * 100_000, {}, 400, "http_error"),
        (json.dumps(hold_body(extra=1)), {}, 422, "invalid_request"),
        (json.dumps(hold_body()), {"Idempotency-Key": ""}, 422, "invalid_request"),
        (json.dumps(hold_body()), {"Idempotency-Key": "k" * 256}, 422, "invalid_request"),
        (json.dumps(hold_body()), {"Content-Type": "text/plain"}, 422, "invalid_request"),
    ],
)
def test_what_the_lean_way_does_not_take_fastapi_answers(
    client: TestClient,
    service: dict[str, str],
    by_fastapi: list[str],
    content: str,
    headers: dict[str, str],
    status: int,
    kind: str,
) -> None:
    sent = {"Content-Type": "application/json", **service, **headers}
    answer = client.post("/v1/holds", content=content, headers=sent)
    assert (answer.status_code, answer.json()["error"]["type"]) == (status, kind)
    assert by_fastapi == ["/v1/holds"]


def test_a_key_below_the_role_and_no_key_are_answered_by_fastapi(
    client: TestClient, service: dict[str, str], keys: Keys, by_fastapi: list[str]
) -> None:
    forbidden = client.post("/v1/holds/h1/release", headers=keys.header("account"))
    assert forbidden.status_code == 403
    unauthenticated = client.post("/v1/holds/h1/release")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert by_fastapi == ["/v1/holds/h1/release"] * 2
