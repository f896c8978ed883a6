"""Metadata within its bounds, everywhere it is taken: a 422 naming the bound, and nothing
written."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.core import metadata
from creditmeter.core.errors import InvalidRequest
from tests.api.conftest import Keys


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


DEEP = nested(600)
OVER = {
    "nested more than 16 levels deep": nested(metadata.MAX_DEPTH + 1),
    "257 keys": {f"k{i}": i for i in range(metadata.MAX_KEYS + 1)},
    "a text of 4097 characters": {"note": "x" * (metadata.MAX_TEXT + 1)},
    "a key of 4097 characters": {"k" * (metadata.MAX_TEXT + 1): 1},
    "bytes as JSON; at most 16384": {f"k{i}": "x" * 4_000 for i in range(5)},
}
AT_THE_BOUNDS = [
    nested(metadata.MAX_DEPTH),
    {f"k{i}": i for i in range(metadata.MAX_KEYS)},
    {"note": "x" * metadata.MAX_TEXT, "k" * metadata.MAX_TEXT: "é" * 4_000},
]


def refused(response: Any, bound: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert bound in error["message"]
    assert "metadata" in error["message"]


@pytest.mark.parametrize("bound", list(OVER))
def test_each_bound_is_422_naming_it_and_creates_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, bound: str
) -> None:
    response = client.post(
        "/v1/accounts", json={"id": "deep", "metadata": OVER[bound]}, headers=keys.header("admin")
    )
    refused(response, bound)
    assert client.get("/v1/accounts/deep", headers=keys.header("admin")).status_code == 404


def test_metadata_nested_600_deep_is_refused_everywhere_and_reads_keep_working(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.grant("acme", 1_000)
    hold = meter.authorize("acme", "chat", credits=10)
    service = keys.header("service")
    bound = "nested more than 16 levels deep"

    writes = {
        "create account": client.post(
            "/v1/accounts", json={"id": "deep", "metadata": DEEP}, headers=keys.header("admin")
        ),
        "change account": client.patch(
            "/v1/accounts/acme", json={"metadata": DEEP}, headers=keys.header("admin")
        ),
        "usage": client.post(
            "/v1/usage",
            json={"account": "acme", "feature": "chat", "credits": 1, "metadata": DEEP},
            headers=service,
        ),
        "batch": client.post(
            "/v1/usage/batch",
            json={"events": [{"account": "acme", "feature": "chat", "metadata": DEEP}]},
            headers=service,
        ),
        "authorize": client.post(
            "/v1/holds",
            json={"account": "acme", "feature": "chat", "credits": 1, "metadata": DEEP},
            headers=service,
        ),
        "settle": client.post(
            f"/v1/holds/{hold.id}/settle", json={"metadata": DEEP}, headers=service
        ),
    }

    for response in writes.values():
        refused(response, bound)
    admin = keys.header("admin")
    assert client.get("/v1/accounts", headers=admin).status_code == 200
    assert client.get("/v1/accounts/acme/usage", headers=admin).json()["data"] == []
    assert client.get("/v1/accounts/acme", headers=admin).json()["metadata"] == {}
    assert meter.hold(hold.id).status == "pending"
    assert client.get("/v1/accounts/deep", headers=admin).status_code == 404


@pytest.mark.parametrize("kept", AT_THE_BOUNDS)
def test_metadata_at_the_bounds_is_kept(
    client: TestClient, meter: CreditMeter, keys: Keys, kept: dict[str, Any]
) -> None:
    response = client.post(
        "/v1/accounts", json={"id": "full", "metadata": kept}, headers=keys.header("admin")
    )
    assert response.status_code == 200, response.text
    assert meter.account("full").metadata == kept


def test_the_library_refuses_too_and_writes_nothing(meter: CreditMeter) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    with pytest.raises(InvalidRequest, match="nested more than 16 levels deep"):
        meter.create_account("deep", metadata=DEEP)
    with pytest.raises(InvalidRequest, match="257 keys"):
        meter.charge("acme", "chat", credits=0, metadata=OVER["257 keys"])
    hold = meter.authorize("acme", "chat", credits=0, metadata={f"a{i}": i for i in range(200)})
    with pytest.raises(InvalidRequest, match="300 keys"):  # with the hold's own
        meter.settle(hold.id, metadata={f"b{i}": i for i in range(100)})
    assert meter.list_accounts() == [meter.account("acme")]
    assert not meter.usage("acme").data
