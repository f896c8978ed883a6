"""The price book and the plans over HTTP."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, get_args

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.api.schemas.catalog import Period
from creditmeter.core.types import PeriodKind
from tests.api.conftest import Keys
from tests.conftest import Clock

Json = dict[str, Any]


def put(client: TestClient, path: str, body: Json, keys: Keys, role: str = "superadmin") -> Json:
    response = client.put(path, json=body, headers=keys.header(role))
    assert response.status_code == 200, response.text
    result: Json = response.json()
    return result


# Features.


def test_a_feature_is_created_at_version_1_with_its_rates_as_decimal_strings(
    client: TestClient, keys: Keys
) -> None:
    body = {
        "name": "Chat",
        "pool": "ai",
        "rates": {"input_tokens": "0.002", "output_tokens": 1},
        "models": {"openai/gpt-4o": {"input_tokens": "0.005"}},
        "multiplier": "1.25",
    }

    created = put(client, "/v1/features/llm.chat", body, keys)
    listed = client.get("/v1/features", headers=keys.header("account"))

    assert created == {
        "key": "llm.chat",
        "name": "Chat",
        "pool": "ai",
        "rates": {"input_tokens": "0.002", "output_tokens": "1"},
        "models": {"openai/gpt-4o": {"input_tokens": "0.005"}},
        "multiplier": "1.25",
        "unknown_models": "refuse",
        "cost_plus": False,
        "version": 1,
    }
    assert listed.status_code == 200
    assert listed.json() == {"data": [created], "next_cursor": None}


def test_a_feature_that_prices_unknown_models_at_its_default_rates_says_so(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    body = {"rates": {"tokens": 1}, "models": {"gpt-4o": {"tokens": 2}}}

    refusing = put(client, "/v1/features/llm.chat", body, keys)
    falling_back = put(
        client, "/v1/features/llm.chat", {**body, "unknown_models": "default_rates"}, keys
    )
    guessing = client.put(
        "/v1/features/llm.chat",
        json={**body, "unknown_models": "guess"},
        headers=keys.header("superadmin"),
    )

    assert (refusing["unknown_models"], refusing["version"]) == ("refuse", 1)
    assert (falling_back["unknown_models"], falling_back["version"]) == ("default_rates", 2)
    assert guessing.status_code == 422
    assert meter.features()[0].version == 2


def test_a_changed_price_is_a_new_version_and_usage_keeps_the_one_it_was_rated_with(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    meter.grant("acme", 10_000)
    first = put(client, "/v1/features/chat", {"rates": {"tokens": "0.5"}}, keys)
    meter.charge("acme", "chat", usage={"tokens": 1_001})
    clock.advance(minutes=1)

    same = put(client, "/v1/features/chat", {"rates": {"tokens": "0.5"}}, keys)
    changed = put(client, "/v1/features/chat", {"rates": {"tokens": 2}, "multiplier": "1.5"}, keys)
    meter.charge("acme", "chat", usage={"tokens": 1_001})

    assert (first["version"], same["version"], changed["version"]) == (1, 1, 2)
    assert (changed["name"], changed["pool"]) == ("chat", "chat")
    assert (changed["rates"], changed["multiplier"]) == ({"tokens": "2"}, "1.5")
    usage = client.get("/v1/accounts/acme/usage", headers=keys.header("service")).json()["data"]
    assert [(u["feature_version"], u["credits"]) for u in usage] == [(2, 3_003), (1, 501)]
    assert meter.balance("acme").available == 10_000 - 3_003 - 501
    assert meter.verify() == []


def test_only_admins_change_prices_and_any_key_reads_them(client: TestClient, keys: Keys) -> None:
    body = {"rates": {"calls": 50}}
    for role in ("service", "account"):
        refused = client.put("/v1/features/goal", json=body, headers=keys.header(role))
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "forbidden"
    assert client.put("/v1/features/goal", json=body).status_code == 401
    assert client.get("/v1/features").status_code == 401
    for role in ("service", "admin", "superadmin", "account", "other"):
        listed = client.get("/v1/features", headers=keys.header(role))
        assert listed.json() == {"data": [], "next_cursor": None}
    assert put(client, "/v1/features/goal", body, keys, role="superadmin")["version"] == 1


BAD_FEATURES: list[Json] = [
    {"rates": {"tokens": 0.002}},
    {"rates": {"tokens": 1.5}},
    {"rates": {"tokens": -1}},
    {"rates": {"tokens": "-1"}},
    {"rates": {"tokens": "1e-3"}},
    {"rates": {"tokens": "abc"}},
    {"rates": {"tokens": True}},
    {"rates": {"tokens": None}},
    {"rates": {"tokens": 1}, "multiplier": 1.2},
    {"rates": {"tokens": 1}, "multiplier": "NaN"},
    {"rates": {"tokens": 1}, "models": {"m": {"tokens": 0.5}}},
    {"rates": {}},
    {"models": {"m": {"tokens": 1}}},
    {"rates": {"bad unit": 1}},
    {"rates": {"tokens": 1}, "pool": "two words"},
    {"rates": {"tokens": 1}, "name": ""},
    {"rates": {"tokens": 1}, "name": "nul\u0000"},
    {"rates": {"tokens": 1}, "colour": "red"},
]


def test_bad_prices_are_422_and_change_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    put(client, "/v1/features/chat", {"rates": {"tokens": "0.5"}}, keys)
    for body in BAD_FEATURES:
        response = client.put("/v1/features/chat", json=body, headers=keys.header("superadmin"))
        assert response.status_code == 422, body
        assert response.json()["error"]["type"] == "invalid_request"
    bad_key = client.put(
        "/v1/features/two%20words", json={"rates": {"tokens": 1}}, headers=keys.header("superadmin")
    )
    assert bad_key.status_code == 422
    [feature] = meter.features()
    assert (feature.key, feature.version, str(feature.rule.rates["tokens"])) == ("chat", 1, "0.5")


# Plans.


def test_a_plan_is_created_and_replaced(client: TestClient, meter: CreditMeter, keys: Keys) -> None:
    body = {
        "name": "Pro",
        "allowances": {"chat": 20_000, "images": None},
        "features": ["llm.chat", "image.generate"],
        "period": "anniversary_month",
        "rollover": 5_000,
    }

    created = put(client, "/v1/plans/pro", body, keys)
    replaced = put(client, "/v1/plans/pro", {"allowances": {"*": 50_000}}, keys, "superadmin")
    put(client, "/v1/plans/free", {"name": "Free", "allowances": {"*": 100}}, keys)
    listed = client.get("/v1/plans", headers=keys.header("other"))

    assert created == {
        "key": "pro",
        "name": "Pro",
        "allowances": {"chat": 20_000, "images": None},
        "features": ["image.generate", "llm.chat"],
        "period": "anniversary_month",
        "rollover": 5_000,
    }
    assert replaced == {
        "key": "pro",
        "name": "pro",
        "allowances": {"*": 50_000},
        "features": "*",
        "period": "calendar_month",
        "rollover": 0,
    }
    assert listed.status_code == 200
    assert [(p["key"], p["name"]) for p in listed.json()["data"]] == [
        ("free", "Free"),
        ("pro", "pro"),
    ]
    [pro] = [p for p in meter.plans() if p.key == "pro"]
    assert (pro.allowances, pro.rollover_cap) == ({"*": 50_000}, 0)


def test_a_plan_put_over_http_is_what_new_accounts_get(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    put(client, "/v1/plans/team", {"allowances": {"*": 30_000}, "features": ["chat"]}, keys)
    meter.create_account("initech", plan="team")
    assert meter.balance("initech").available == 30_000
    assert meter.verify() == []


BAD_PLANS: list[Json] = [
    {"allowances": {"*": 1.5}},
    {"allowances": {"*": -1}},
    {"allowances": {"*": "100"}},
    {"allowances": {"two words": 100}},
    {"features": "all"},
    {"features": ["chat", 7]},
    {"period": "fortnight"},
    {"rollover": -5},
    {"rollover": 2.5},
    {"rollover_cap": 5},
    {"name": "nul\u0000"},
]


def test_bad_plans_are_422_and_change_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    for body in BAD_PLANS:
        response = client.put("/v1/plans/pro", json=body, headers=keys.header("superadmin"))
        assert response.status_code == 422, body
        assert response.json()["error"]["type"] == "invalid_request"
    for role in ("service", "account"):
        response = client.put("/v1/plans/pro", json={}, headers=keys.header(role))
        assert response.status_code == 403
    assert meter.plans() == []


def test_the_period_kinds_of_the_schema_are_those_of_the_core() -> None:
    assert set(get_args(Period)) == {kind.value for kind in PeriodKind}


# Model prices.


def test_a_superadmin_syncs_model_prices_and_admins_read_them(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    synced = client.post(
        "/v1/prices/sync", json={"providers": ["openai"]}, headers=keys.header("superadmin")
    )
    again = client.post(
        "/v1/prices/sync", json={"providers": ["openai"]}, headers=keys.header("superadmin")
    )
    listed = client.get("/v1/prices", params={"model": "gpt-4o"}, headers=keys.header("admin"))
    versions = client.get("/v1/prices/versions", headers=keys.header("admin"))

    assert synced.status_code == 200, synced.text
    version = synced.json()
    assert (version["version"], version["providers"]) == (1, ["openai"])
    assert version["source"].startswith("genai-prices ")
    assert again.json() == version
    assert listed.json() == {
        "version": version,
        "data": [
            {"provider": "openai", "model": "gpt-4o", "unit": unit, "usd_per_million": usd}
            for unit, usd in (
                ("cached_tokens", "1.25"),
                ("input_tokens", "2.5"),
                ("output_tokens", "10"),
            )
        ],
    }
    assert versions.json() == {"data": [version], "next_cursor": None}
    [entry, _] = meter.audit_log(actions=("prices.synced",)).data
    superadmin = meter.authenticate(keys.superadmin)
    assert superadmin is not None
    assert (entry.actor.key_id, entry.subject_id) == (superadmin.id, "1")


def test_only_a_superadmin_syncs_and_an_unknown_provider_is_422(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    by_admin = client.post("/v1/prices/sync", json={}, headers=keys.header("admin"))
    by_service = client.get("/v1/prices", headers=keys.header("service"))
    unknown = client.post(
        "/v1/prices/sync", json={"providers": ["openia"]}, headers=keys.header("superadmin")
    )
    no_version = client.get("/v1/prices", params={"version": 7}, headers=keys.header("admin"))
    before = client.get("/v1/prices", headers=keys.header("admin"))

    assert (by_admin.status_code, by_service.status_code) == (403, 403)
    assert unknown.status_code == 422
    assert "'openia'" in unknown.json()["error"]["message"]
    assert no_version.status_code == 404
    assert before.json() == {"version": None, "data": []}
    assert meter.price_book_versions() == []


def test_a_cost_plus_feature_over_http_records_the_provider_s_cost_and_version(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    meter.grant("acme", 1_000, source="purchase")
    client.post(
        "/v1/prices/sync", json={"providers": ["openai"]}, headers=keys.header("superadmin")
    )
    feature = put(client, "/v1/features/llm.cost", {"cost_plus": True, "multiplier": "1.5"}, keys)
    neither = client.put("/v1/features/llm.none", json={}, headers=keys.header("superadmin"))

    used = client.post(
        "/v1/usage",
        json={
            "account": "acme",
            "feature": "llm.cost",
            "model": "gpt-4o-2024-08-06",
            "usage": {"input_tokens": 384, "output_tokens": 250},
        },
        headers=keys.header("service"),
    )
    [record] = client.get("/v1/accounts/acme/usage", headers=keys.header("service")).json()["data"]

    assert (feature["cost_plus"], feature["rates"], feature["multiplier"]) == (True, {}, "1.5")
    assert neither.status_code == 422
    assert (used.status_code, used.json()["credits"]) == (200, 6)
    assert Decimal(record["provider_cost"]) == Decimal("0.00346")
    assert (record["price_book_version"], record["credits"]) == (1, 6)


def test_an_admin_reads_what_past_usage_costs_under_another_price_book_version(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    meter.create_account("acme")
    meter.grant("acme", 1_000, source="purchase")
    meter.sync_prices(["mistral"])
    meter.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    small = {"input_tokens": 100_000, "output_tokens": 20_000}
    meter.charge("acme", "llm.cost", model="mistral-small-latest", usage=small)
    day = {"since": "2026-03-10T00:00:00Z", "until": "2026-03-11T00:00:00Z"}
    clock.advance(days=7)  # mistral-small-latest: $0.10 / $0.30 → $0.15 / $0.60 on 2026-03-16
    meter.sync_prices(["mistral"])
    admin = keys.header("admin")

    found = client.get("/v1/rerate", params={**day, "version": "2"}, headers=admin)
    missing = client.get("/v1/rerate", params={**day, "version": "3"}, headers=admin)
    naive = {"since": "2026-03-10T00:00:00", "until": day["until"], "version": "1"}
    unzoned = client.get("/v1/rerate", params=naive, headers=admin)

    assert found.status_code == 200, found.text
    line = {
        "records": 1,
        "credits": 24,
        "rerated_credits": 41,
        "difference": 17,
        "provider_cost": "0.016",
        "rerated_provider_cost": "0.027",
    }
    assert found.json() == {
        "version": 2,
        "since": "2026-03-10T00:00:00Z",
        "until": "2026-03-11T00:00:00Z",
        "accounts": [{"key": "acme", **line}],
        "models": [{"key": "mistral-small-latest", **line}],
        "total": {"key": "total", **line},
        "hand_rated": 0,
        "unpriced": 0,
        "rated_versions": {"acme": [1]},
    }
    assert (missing.status_code, unzoned.status_code) == (404, 422)


def test_a_superadmin_books_a_re_rating_once(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    meter.create_account("acme")
    meter.grant("acme", 1_000, source="purchase")
    meter.sync_prices(["mistral"])
    meter.put_feature("llm.cost", cost_plus=True, multiplier="1.5")
    small = {"input_tokens": 100_000, "output_tokens": 20_000}
    meter.charge("acme", "llm.cost", model="mistral-small-latest", usage=small)  # 24 credits
    clock.advance(days=7)  # mistral-small-latest: $0.10 / $0.30 → $0.15 / $0.60 on 2026-03-16
    meter.sync_prices(["mistral"])
    body = {"since": "2026-03-10T00:00:00Z", "until": "2026-03-11T00:00:00Z", "version": 2}
    superadmin = keys.header("superadmin")
    keyed = {**superadmin, "Idempotency-Key": "rr-1"}

    booked = client.post("/v1/rerate/apply", json=body, headers=keyed)
    retried = client.post("/v1/rerate/apply", json=body, headers=keyed)
    again = client.post("/v1/rerate/apply", json=body, headers=superadmin)

    assert booked.status_code == 200, booked.text
    found = booked.json()
    assert (found["version"], found["account"], found["difference"]) == (2, None, 17)
    [txn] = found["transactions"]
    assert (txn["account"], txn["type"], txn["amount"]) == ("acme", "adjustment", -17)
    assert txn["metadata"]["rerate"] == found["id"]
    assert (txn["metadata"]["rated_versions"], txn["metadata"]["version"]) == ([1], 2)
    assert retried.json() == found
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "already_rerated"
    assert "re-rated under price book version 2" in again.json()["error"]["message"]
    assert meter.balance("acme").available == 1_000 - 24 - 17
    assert meter.verify() == []
