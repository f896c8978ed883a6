"""The stats over HTTP: the shapes, decimals as strings, and 422 for what cannot be answered.
The figures themselves are tested in tests/service/test_stats.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from tests.api.conftest import Keys
from tests.conftest import Clock

MONTH = {"since": "2026-03-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}


@pytest.fixture
def used(meter: CreditMeter, keys: Keys, clock: Clock) -> Keys:
    """acme (available 1,000 − 300 = 700) used chat twice, on the 10th and the 11th."""
    meter.put_feature("chat", rates={"tokens": 1})
    meter.grant("acme", 1_000, source="admin", reason="start")
    meter.charge("acme", "chat", usage={"tokens": 100}, model="gpt-4o")
    clock.advance(days=1)
    meter.charge("acme", "chat", usage={"tokens": 200}, provider_cost=Decimal("0.05"))
    return keys


def get(client: TestClient, keys: Keys, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=keys.header("admin"))
    assert response.status_code == 200, response.text
    return response.json()


def test_the_overview(client: TestClient, used: Keys) -> None:
    body = get(client, used, "/v1/admin/stats", **MONTH, currency="usd")
    assert body["since"].startswith("2026-03-01T00:00:00")
    assert body["issued"] == {
        "allowance": 0,
        "purchased": 0,
        "granted": 1_000,
        "refunded": 0,
        "voided": 0,
        "total": 1_000,
    }
    assert (body["consumed"], body["billable_credits"], body["events"]) == (300, 300, 2)
    assert (body["billable_usd"], body["provider_cost_usd"]) == ("0.3", "0.05")
    assert (body["margin_usd"], body["margin_ratio"]) == ("0.25", "0.8333")
    assert body["revenue"] == []
    assert (body["accounts"], body["active_accounts"], body["average_balance"]) == (2, 1, "350.00")
    assert (body["low_accounts"], body["critical_accounts"]) == (1, 1)
    assert body["top_accounts"] == [{"account": "acme", "name": "Acme", "credits": 300}]
    assert [m["key"] for m in body["models"]] == ["", "gpt-4o"]
    assert [f["key"] for f in body["features"]] == ["chat"]


def test_the_breakdowns(client: TestClient, used: Keys) -> None:
    models = get(client, used, "/v1/admin/stats/models", **MONTH)["data"]
    assert models == [
        {
            "key": "",
            "events": 1,
            "credits": 200,
            "billable_usd": "0.2",
            "provider_cost_usd": "0.05",
            "margin_usd": "0.15",
            "margin_ratio": "0.75",
        },
        {
            "key": "gpt-4o",
            "events": 1,
            "credits": 100,
            "billable_usd": "0.1",
            "provider_cost_usd": "0",
            "margin_usd": "0.1",
            "margin_ratio": "1",
        },
    ]
    features = get(client, used, "/v1/admin/stats/features", **MONTH)["data"]
    assert [(f["key"], f["events"], f["credits"]) for f in features] == [("chat", 2, 300)]


def test_account_search_pages_with_a_cursor(client: TestClient, used: Keys) -> None:
    first = get(client, used, "/v1/admin/accounts", sort="available", order="desc", limit=1)
    assert [a["id"] for a in first["data"]] == ["acme"]
    assert first["data"][0] == {
        "id": "acme",
        "name": "Acme",
        "plan": None,
        "status": "active",
        "available": 700,
        "level": "low",
        "created_at": "2026-03-10T12:00:00Z",
        "credits_used_30d": 300,
    }
    second = get(
        client,
        used,
        "/v1/admin/accounts",
        sort="available",
        order="desc",
        limit=1,
        cursor=first["next_cursor"],
    )
    assert ([a["id"] for a in second["data"]], second["next_cursor"]) == (["globex"], None)
    found = get(client, used, "/v1/admin/accounts", q="glo", level="critical")["data"]
    assert [a["id"] for a in found] == ["globex"]


def test_daily_usage_for_an_account_and_for_all(client: TestClient, used: Keys) -> None:
    rows = [
        {"day": "2026-03-10", "key": "gpt-4o", "credits": 100},
        {"day": "2026-03-11", "key": "", "credits": 200},
    ]
    mine = client.get(
        "/v1/accounts/acme/usage/daily",
        params={**MONTH, "by": "model"},
        headers=used.header("account"),
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["data"] == rows
    assert get(client, used, "/v1/admin/usage/daily", **MONTH, by="model")["data"] == rows


def test_the_balance_has_the_forecast(client: TestClient, used: Keys) -> None:
    response = client.get("/v1/accounts/acme/balance", headers=used.header("account"))
    assert response.status_code == 200, response.text
    # 300 credits in 30 days: 10 a day, and 700 left last 70 days after 11 March, 12:00.
    assert response.json()["forecast"] == {
        "days": 30,
        "consumed": 300,
        "burn_per_day": "10.00",
        "runs_out_on": "2026-05-20",
    }


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/admin/stats", {"since": "2026-04-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}),
        ("/v1/admin/stats", {"since": "2026-03-01T00:00:00Z"}),
        ("/v1/admin/stats", {"since": "2026-03-01", "until": "2026-04-01T00:00:00Z"}),
        ("/v1/admin/stats", {**MONTH, "currency": "euro"}),
        (
            "/v1/admin/stats/models",
            {"since": "2026-04-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"},
        ),
        ("/v1/admin/stats/features", {"until": "2026-04-01T00:00:00Z"}),
        ("/v1/admin/accounts", {"sort": "balance"}),
        ("/v1/admin/accounts", {"level": "empty"}),
        ("/v1/admin/accounts", {"status": "gone"}),
        ("/v1/admin/accounts", {"order": "up"}),
        ("/v1/admin/accounts", {"limit": 0}),
        ("/v1/admin/accounts", {"cursor": "not-a-cursor"}),
        ("/v1/admin/usage/daily", {**MONTH, "by": "week"}),
        (
            "/v1/accounts/acme/usage/daily",
            {"since": "2026-04-02T00:00:00Z", "until": "2026-04-01T00:00:00Z"},
        ),
    ],
)
def test_bad_parameters_are_a_422(
    client: TestClient, used: Keys, path: str, params: dict[str, str | int]
) -> None:
    response = client.get(path, params=params, headers=used.header("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] in {"invalid_request", "validation_error"}


def test_a_cursor_of_another_sort_is_a_422(client: TestClient, used: Keys) -> None:
    cursor = get(client, used, "/v1/admin/accounts", sort="name", limit=1)["next_cursor"]
    response = client.get(
        "/v1/admin/accounts",
        params={"sort": "id", "cursor": cursor},
        headers=used.header("admin"),
    )
    assert response.status_code == 422, response.text
