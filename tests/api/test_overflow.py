"""Totals that could pass 64 bits: bounded where they accumulate, and a 4xx, never a 500
or "unavailable", where a sum still would."""

from __future__ import annotations

from fastapi.testclient import TestClient

from creditmeter import CreditMeter, UsageEvent
from creditmeter.core.types import MAX_CREDITS, MAX_PERIOD_USAGE
from tests.api.conftest import Keys

BATCHES = 10
"""Batches of a thousand of the largest usages: 10^19 credits, past 64 bits."""


def charge_batches(meter: CreditMeter) -> None:
    for _ in range(BATCHES):
        meter.charge_many([UsageEvent("acme", "chat", credits=MAX_CREDITS)] * 1_000)


def test_usage_of_an_unlimited_allowance_stops_at_its_bound(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_plan("max", allowances={"*": None})
    meter.change_plan("acme", "max", immediately=True)
    charge_batches(meter)
    service = keys.header("service")
    event = {"account": "acme", "feature": "chat", "credits": MAX_CREDITS}

    one = client.post("/v1/usage", json=event, headers=service)
    batch = client.post(
        "/v1/usage/batch", json={"events": [{**event, "idempotency_key": "e1"}]}, headers=service
    )
    balance = client.get("/v1/accounts/acme/balance", headers=service)
    summary = client.get("/v1/accounts/acme/usage/summary", headers=service)

    assert one.status_code == 422
    assert one.json()["error"]["type"] == "total_out_of_range"
    assert str(MAX_PERIOD_USAGE) in one.json()["error"]["message"]
    assert batch.status_code == 200
    assert batch.json()["results"][0]["status"] == 422
    assert balance.status_code == 200, balance.text
    assert balance.json()["allowance"]["used"] == MAX_PERIOD_USAGE
    assert summary.status_code == 200, summary.text
    assert sum(g["credits"] for g in summary.json()["data"]) == MAX_PERIOD_USAGE


def test_a_sum_past_64_bits_is_never_unavailable(
    client: TestClient, meter: CreditMeter, keys: Keys, engine_name: str
) -> None:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.change_settings({"enforcement": "off"}, changed_by="test")
    charge_batches(meter)  # recorded, not charged: no total of the account holds them

    summary = client.get("/v1/accounts/acme/usage/summary", headers=keys.header("service"))

    if engine_name == "sqlite":  # SQLite's SUM stops at 64 bits
        assert summary.status_code == 422, summary.text
        assert summary.json()["error"]["type"] == "total_out_of_range"
    else:  # PostgreSQL sums bigints as numerics
        assert summary.status_code == 200, summary.text
        assert summary.json()["data"][0]["credits"] == BATCHES * 1_000 * MAX_CREDITS
