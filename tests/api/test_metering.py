"""Holds, usage, batches and checks over HTTP: the seed scenarios with their numbers, on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from pydantic import BaseModel, TypeAdapter

from creditmeter import CreditMeter
from creditmeter.api.schemas.metering import BatchOut, CheckOut, HoldOut, SettleOut, UsageOut
from creditmeter.core.types import GrantSource
from tests.api.conftest import Keys
from tests.api.test_observability import sample
from tests.conftest import Clock

UPGRADE_URL = "https://example.com/upgrade"
PRO = "initech"
"""An account on the ``pro`` plan: 20,000 monthly credits for every feature."""

Json = dict[str, Any]


def assert_books_balance(meter: CreditMeter) -> None:
    assert meter.verify() == []


def ledger_size(meter: CreditMeter, account_id: str) -> int:
    return len(list(meter.iter_transactions(account_id)))


def usage_count(meter: CreditMeter, account_id: str) -> int:
    return len(meter.usage(account_id, limit=1000).data)


def split_of(
    meter: CreditMeter, account_id: str, transaction_id: str
) -> dict[GrantSource | None, int]:
    [txn] = [t for t in meter.iter_transactions(account_id) if t.id == transaction_id]
    return txn.by_grant_source()


@pytest.fixture
def service(keys: Keys) -> dict[str, str]:
    return keys.header("service")


@pytest.fixture
def pro(meter: CreditMeter, keys: Keys) -> str:
    meter.put_plan("pro", allowances={"*": 20_000})
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account(PRO, plan="pro")
    meter.change_settings({"upgrade_url": UPGRADE_URL}, changed_by="t")
    return PRO


@pytest.fixture
def acme(meter: CreditMeter, keys: Keys) -> str:
    """Account ``acme`` (no plan) with 1,000 purchased credits and a ``chat`` feature."""
    meter.put_feature("chat", rates={"tokens": 1})
    meter.grant("acme", 1_000, source="purchase")
    return "acme"


def use(client: TestClient, headers: dict[str, str], account: str, **body: Any) -> Response:
    return client.post("/v1/usage", json={"account": account, **body}, headers=headers)


# The monthly allowance and purchased credits.


def test_allowance_used_up_is_402_with_the_allowance_and_the_upgrade_url(
    client: TestClient, service: dict[str, str], meter: CreditMeter, pro: str
) -> None:
    used = use(client, service, pro, feature="chat", credits=20_000)
    assert used.status_code == 200
    assert (used.json()["charged"], used.json()["available_after"]) == (20_000, 0)
    count = ledger_size(meter, pro)

    refused = use(client, service, pro, feature="chat", usage={"tokens": 1})

    assert refused.status_code == 402
    assert refused.json() == {
        "error": {
            "type": "insufficient_credits",
            "message": "1 credits required, 0 available",
            "required": 1,
            "available": 0,
            "allowance": {"used": 20_000, "limit": 20_000, "percentage": 100},
            "purchased_available": 0,
            "upgrade_url": UPGRADE_URL,
        }
    }
    assert ledger_size(meter, pro) == count
    assert usage_count(meter, pro) == 1
    assert_books_balance(meter)


def test_after_a_purchase_the_next_usage_is_paid_from_it(
    client: TestClient, service: dict[str, str], meter: CreditMeter, pro: str
) -> None:
    meter.charge(pro, "chat", credits=20_000)
    meter.grant(pro, 50_000, source="purchase")

    paid = use(client, service, pro, feature="chat", usage={"tokens": 5_000})

    assert paid.status_code == 200
    body = paid.json()
    assert (body["credits"], body["charged"], body["available_after"]) == (5_000, 5_000, 45_000)
    assert (body["debited"], body["uncollected"]) == (0, 0)
    assert (body["account"], body["feature"], body["would_refuse"]) == (pro, "chat", None)
    assert split_of(meter, pro, body["transaction_id"]) == {GrantSource.PURCHASE: -5_000}
    assert meter.usage_record(body["id"]).credits == 5_000
    assert_books_balance(meter)


def test_a_usage_splits_across_the_allowance_and_purchased_credits(
    client: TestClient, service: dict[str, str], meter: CreditMeter, pro: str
) -> None:
    meter.charge(pro, "chat", credits=18_000)
    meter.grant(pro, 50_000, source="purchase")

    paid = use(client, service, pro, feature="chat", usage={"tokens": 5_000})

    assert paid.status_code == 200
    assert paid.json()["available_after"] == 47_000
    assert split_of(meter, pro, paid.json()["transaction_id"]) == {
        GrantSource.ALLOWANCE: -2_000,
        GrantSource.PURCHASE: -3_000,
    }
    [latest] = meter.transactions(pro, types=("usage",), limit=1).data
    assert latest.id == paid.json()["transaction_id"]
    assert_books_balance(meter)


def test_reaching_90_percent_of_the_allowance_warns(
    client: TestClient, service: dict[str, str], meter: CreditMeter, pro: str
) -> None:
    meter.charge(pro, "chat", credits=17_000)

    used = use(client, service, pro, feature="chat", usage={"tokens": 1_000})

    assert used.status_code == 200
    assert used.json()["available_after"] == 2_000
    assert used.json()["warnings"] == [
        {"code": "allowance_90", "message": "90 % of monthly allowance used"}
    ]
    assert_books_balance(meter)


def test_allowance_and_purchased_credits_both_used_up_is_402(
    client: TestClient, service: dict[str, str], meter: CreditMeter, pro: str
) -> None:
    meter.grant(pro, 50_000, source="purchase")
    meter.charge(pro, "chat", credits=70_000)
    count = ledger_size(meter, pro)

    refused = use(client, service, pro, feature="chat", credits=100)

    assert refused.status_code == 402
    error = refused.json()["error"]
    assert (error["required"], error["available"], error["purchased_available"]) == (100, 0, 0)
    assert error["allowance"] == {"used": 20_000, "limit": 20_000, "percentage": 100}
    assert ledger_size(meter, pro) == count
    assert usage_count(meter, pro) == 1
    assert meter.balance(pro).available == 0
    assert_books_balance(meter)


# Pricing.


def test_llm_tokens_with_a_multiplier(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    meter.put_feature("llm.chat", rates={"input_tokens": 1, "output_tokens": 1}, multiplier="1.5")
    meter.grant(acme, 9_000, source="purchase")

    used = use(
        client,
        service,
        acme,
        feature="llm.chat",
        usage={"input_tokens": 1_000, "output_tokens": 500},
        model="gpt",
        member="ann",
        metadata={"conversation": "c_42"},
    )

    assert used.status_code == 200
    assert (used.json()["credits"], used.json()["available_after"]) == (2_250, 7_750)
    record = meter.usage_record(used.json()["id"])
    assert record.quantities == {"input_tokens": 1_000, "output_tokens": 500}
    assert (record.model, record.member) == ("gpt", "ann")
    assert record.metadata == {"conversation": "c_42"}
    assert_books_balance(meter)


def test_two_large_images(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    meter.put_feature("image.generate", rates={"images_1024x1024": 6_000})
    meter.grant(acme, 19_000, source="purchase")

    used = use(client, service, acme, feature="image.generate", usage={"images_1024x1024": 2})

    assert (used.json()["credits"], used.json()["available_after"]) == (12_000, 8_000)
    assert_books_balance(meter)


def test_decimal_string_quantities_are_priced_exactly_and_rounded_up_once(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    used = use(client, service, acme, feature="chat", usage={"tokens": "2.5"})
    # A JSON number without a fraction is the integer it equals, as for credits.
    whole = use(client, service, acme, feature="chat", usage={"tokens": 2.0})

    assert (used.status_code, whole.status_code) == (200, 200)
    assert (used.json()["credits"], whole.json()["credits"]) == (3, 2)
    assert meter.usage_record(used.json()["id"]).quantities == {"tokens": "2.5"}
    assert meter.usage_record(whole.json()["id"]).quantities == {"tokens": 2}
    assert_books_balance(meter)


def test_fixed_cost_services_and_a_refusal_that_changes_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, keys: Keys
) -> None:
    meter.put_feature("lead_collection_100", rates={"calls": 20})
    meter.put_feature("csv_export", rates={"calls": 5})
    meter.grant("acme", 100, source="purchase")

    leads = use(client, service, "acme", feature="lead_collection_100")
    export = use(client, service, "acme", feature="csv_export")

    assert [leads.json()["available_after"], export.json()["available_after"]] == [80, 75]
    meter.grant("globex", 10, source="purchase")
    count = ledger_size(meter, "globex")
    refused = use(client, service, "globex", feature="lead_collection_100")
    assert refused.status_code == 402
    assert (refused.json()["error"]["required"], refused.json()["error"]["available"]) == (20, 10)
    assert meter.balance("globex").available == 10
    assert ledger_size(meter, "globex") == count
    assert usage_count(meter, "globex") == 0
    assert_books_balance(meter)


# What a plan allows and what an account's status allows.


def test_a_feature_outside_a_starter_plan_is_403(
    client: TestClient, service: dict[str, str], meter: CreditMeter, keys: Keys
) -> None:
    meter.put_plan("starter", allowances={"*": 1_000}, features=["csv_export"])
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("hooli", plan="starter")
    count = ledger_size(meter, "hooli")

    used = use(client, service, "hooli", feature="chat", usage={"tokens": 10})
    held = client.post(
        "/v1/holds", json={"account": "hooli", "feature": "chat", "credits": 10}, headers=service
    )

    for refused in (used, held):
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "feature_not_in_plan"
    balance = meter.balance("hooli")
    assert (balance.available, balance.held) == (1_000, 0)
    assert ledger_size(meter, "hooli") == count
    assert_books_balance(meter)


def test_a_suspended_account_is_403(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    meter.update_account(acme, status="suspended")
    count = ledger_size(meter, acme)

    used = use(client, service, acme, feature="chat", credits=10)
    held = client.post(
        "/v1/holds", json={"account": acme, "feature": "chat", "credits": 10}, headers=service
    )

    for refused in (used, held):
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "account_suspended"
    assert meter.balance(acme).available == 1_000
    assert ledger_size(meter, acme) == count
    assert_books_balance(meter)


def test_observe_mode_charges_and_reports_what_it_would_refuse(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    meter.change_settings({"enforcement": "observe"}, changed_by="t")

    used = use(client, service, acme, feature="chat", credits=1_500)

    assert used.status_code == 200
    body = used.json()
    assert (body["charged"], body["uncollected"], body["available_after"]) == (1_000, 500, 0)
    assert body["would_refuse"]["code"] == "insufficient_credits"
    assert_books_balance(meter)


# Holds.


def authorize(client: TestClient, headers: dict[str, str], **body: Any) -> Response:
    return client.post(
        "/v1/holds", json={"account": "acme", "feature": "chat", **body}, headers=headers
    )


def test_authorize_then_settle_less_than_the_estimate(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str, clock: Clock
) -> None:
    held = authorize(client, service, estimate={"tokens": 300}, ttl_seconds=60, member="ann")

    assert held.status_code == 200
    hold = held.json()
    assert {k: hold[k] for k in ("account", "feature", "credits", "reserved", "status")} == {
        "account": acme,
        "feature": "chat",
        "credits": 300,
        "reserved": 300,
        "status": "pending",
    }
    assert (hold["usage_id"], hold["would_refuse"]) == (None, None)
    assert hold["expires_at"] == "2026-03-10T12:01:00Z"
    assert client.get(f"/v1/holds/{hold['id']}", headers=service).json() == hold
    assert (meter.balance(acme).available, meter.balance(acme).held) == (700, 300)

    settled = client.post(
        f"/v1/holds/{hold['id']}/settle", json={"usage": {"tokens": 120}}, headers=service
    )

    assert settled.status_code == 200
    body = settled.json()
    assert (body["credits"], body["charged"], body["available_after"]) == (120, 120, 880)
    assert body["hold"]["status"] == "settled"
    assert body["hold"]["usage_id"] == body["usage_id"]
    assert meter.usage_record(body["usage_id"]).member == "ann"
    assert split_of(meter, acme, body["transaction_id"]) == {GrantSource.PURCHASE: -120}
    assert (meter.balance(acme).available, meter.balance(acme).held) == (880, 0)
    again = client.post(f"/v1/holds/{hold['id']}/settle", json={}, headers=service)
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "hold_not_pending"
    assert meter.balance(acme).available == 880
    assert_books_balance(meter)


def test_settle_more_than_the_estimate_draws_the_difference(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    hold = authorize(client, service, credits=300).json()

    settled = client.post(
        f"/v1/holds/{hold['id']}/settle", json={"usage": {"tokens": 450}}, headers=service
    )

    assert (settled.json()["charged"], settled.json()["available_after"]) == (450, 550)
    assert_books_balance(meter)


def test_settle_without_usage_charges_the_estimate_and_failure_charges_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    estimated = authorize(client, service, estimate={"tokens": 200}).json()
    failed = authorize(client, service, estimate={"tokens": 300}).json()

    as_estimated = client.post(f"/v1/holds/{estimated['id']}/settle", json={}, headers=service)
    as_failed = client.post(
        f"/v1/holds/{failed['id']}/settle", json={"success": False}, headers=service
    )

    assert as_estimated.json()["charged"] == 200
    assert (as_failed.json()["charged"], as_failed.json()["available_after"]) == (0, 800)
    assert meter.usage_record(as_failed.json()["usage_id"]).success is False
    assert_books_balance(meter)


def test_release_returns_everything_and_a_second_release_or_settle_is_409(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    hold = authorize(client, service, credits=400).json()
    count = ledger_size(meter, acme)

    released = client.post(f"/v1/holds/{hold['id']}/release", headers=service)

    assert released.status_code == 200
    assert released.json() == {**hold, "status": "released"}
    assert (meter.balance(acme).available, meter.balance(acme).held) == (1_000, 0)
    for action in ("release", "settle"):
        late = client.post(f"/v1/holds/{hold['id']}/{action}", json={}, headers=service)
        assert late.status_code == 409
        assert late.json()["error"]["type"] == "hold_not_pending"
    assert ledger_size(meter, acme) == count
    assert_books_balance(meter)


def test_authorize_beyond_the_balance_is_402_and_holds_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    authorize(client, service, credits=800)

    refused = authorize(client, service, estimate={"tokens": 201})

    assert refused.status_code == 402
    error = refused.json()["error"]
    assert (error["required"], error["available"], error["purchased_available"]) == (201, 200, 200)
    assert (meter.balance(acme).available, meter.balance(acme).held) == (200, 800)
    assert_books_balance(meter)


def test_a_hold_past_its_ttl_is_read_as_expired_and_cannot_be_settled(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str, clock: Clock
) -> None:
    hold = authorize(client, service, credits=400, ttl_seconds=30).json()
    clock.advance(seconds=30)

    read = client.get(f"/v1/holds/{hold['id']}", headers=service)
    settled = client.post(f"/v1/holds/{hold['id']}/settle", json={}, headers=service)

    assert read.json()["status"] == "expired"
    assert settled.status_code == 409
    assert meter.balance(acme).available == 1_000
    assert_books_balance(meter)


def test_unknown_holds_are_404(client: TestClient, service: dict[str, str]) -> None:
    for method, path in (
        ("GET", "/v1/holds/hold_nope"),
        ("POST", "/v1/holds/hold_nope/settle"),
        ("POST", "/v1/holds/hold_nope/release"),
    ):
        found = client.request(method, path, json={} if method == "POST" else None, headers=service)
        assert found.status_code == 404, path
        assert found.json()["error"]["type"] == "not_found"


def test_a_ttl_outside_1_to_86400_seconds_is_422(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    for ttl in (0, 86_401, 1.5, "60", True, -5):
        refused = authorize(client, service, credits=10, ttl_seconds=ttl)
        assert refused.status_code == 422, ttl

    assert meter.balance(acme).held == 0
    assert_books_balance(meter)


def test_holds_need_a_service_key(
    client: TestClient, keys: Keys, meter: CreditMeter, acme: str
) -> None:
    hold = authorize(client, keys.header("service"), credits=10).json()

    assert authorize(client, keys.header("account"), credits=10).status_code == 403
    assert client.get(f"/v1/holds/{hold['id']}", headers=keys.header("account")).status_code == 403
    assert client.post(f"/v1/holds/{hold['id']}/release").status_code == 401
    assert_books_balance(meter)


# Idempotency.


def test_a_retried_usage_returns_the_first_response_and_changes_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    headers = {**service, "Idempotency-Key": "usage-1"}
    first = use(client, headers, acme, feature="chat", usage={"tokens": 300})
    count = ledger_size(meter, acme)

    again = use(client, headers, acme, feature="chat", usage={"tokens": 300})

    assert again.status_code == 200
    assert again.content == first.content
    assert meter.balance(acme).available == 700
    assert ledger_size(meter, acme) == count
    assert usage_count(meter, acme) == 1
    conflict = use(client, headers, acme, feature="chat", usage={"tokens": 301})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_conflict"
    assert meter.balance(acme).available == 700
    assert ledger_size(meter, acme) == count
    assert_books_balance(meter)


def test_retried_authorize_settle_and_release_return_their_first_responses(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    def post(key: str, path: str, body: Json) -> Response:
        return client.post(path, json=body, headers={**service, "Idempotency-Key": key})

    held = [post("hold-1", "/v1/holds", {"account": acme, "feature": "chat", "credits": 300})]
    held.append(post("hold-1", "/v1/holds", {"account": acme, "feature": "chat", "credits": 300}))
    assert held[1].content == held[0].content
    assert meter.balance(acme).held == 300
    settle = f"/v1/holds/{held[0].json()['id']}/settle"
    settled = [post("settle-1", settle, {"usage": {"tokens": 250}}) for _ in range(2)]
    assert settled[1].status_code == 200
    assert settled[1].content == settled[0].content
    assert meter.balance(acme).available == 750
    conflict = post("settle-1", settle, {"usage": {"tokens": 260}})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_conflict"

    other = post("hold-2", "/v1/holds", {"account": acme, "feature": "chat", "credits": 100})
    release = f"/v1/holds/{other.json()['id']}/release"
    released = [post("release-1", release, {}) for _ in range(2)]
    assert released[1].content == released[0].content
    assert released[0].json()["status"] == "released"
    assert (meter.balance(acme).available, meter.balance(acme).held) == (750, 0)
    assert usage_count(meter, acme) == 1
    assert_books_balance(meter)


# Batches.


def event(key: str, account: str = "acme", feature: str = "chat", **body: Any) -> Json:
    return {"account": account, "feature": feature, "idempotency_key": key, **body}


def batch(client: TestClient, headers: dict[str, str], events: list[Json]) -> Response:
    return client.post("/v1/usage/batch", json={"events": events}, headers=headers)


def test_a_batch_answers_each_event_in_order_and_a_refusal_stops_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    meter.change_settings({"upgrade_url": UPGRADE_URL}, changed_by="t")
    answered = batch(
        client,
        service,
        [
            event("e0", usage={"tokens": 100}),
            event("e1", credits=5_000),
            event("e2", feature="nope"),
            event("e3", usage={"pixels": 1}),
            event("e4", account="nobody"),
            event("e5", account="globex", credits=1),
            event("e6", usage={"tokens": 200}),
        ],
    )

    assert answered.status_code == 200
    results = answered.json()["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert [r["status"] for r in results] == [200, 402, 404, 422, 404, 402, 200]
    assert [r["available_after"] for r in results if r["status"] == 200] == [900, 700]
    assert results[1]["error"] == {
        "type": "insufficient_credits",
        "message": "5000 credits required, 900 available",
        "required": 5_000,
        "available": 900,
        "allowance": {"used": 0, "limit": 0, "percentage": None},
        "purchased_available": 900,
        "upgrade_url": UPGRADE_URL,
    }
    assert [r["error"]["type"] for r in results[2:5]] == [
        "not_found",
        "invalid_request",
        "not_found",
    ]
    assert set(results[0]) == {
        "index",
        "status",
        "id",
        "account",
        "feature",
        "credits",
        "charged",
        "debited",
        "uncollected",
        "available_after",
        "transaction_id",
        "warnings",
        "would_refuse",
    }
    assert meter.balance(acme).available == 700
    assert usage_count(meter, acme) == 2
    assert usage_count(meter, "globex") == 0
    assert_books_balance(meter)


def test_a_charged_event_is_answered_with_the_body_of_its_usage_posted_alone(
    client: TestClient, service: dict[str, str], meter: CreditMeter, pro: str
) -> None:
    """With a warning and what observe mode would refuse: each result of a charged event
    is the body `POST /v1/usage` replays under the event's key, and the whole body is
    `BatchOut` as FastAPI would serialize it."""
    meter.change_settings({"enforcement": "observe"}, changed_by="t")
    meter.charge(pro, "chat", credits=17_000)
    events = [
        event("w0", account=pro, usage={"tokens": 1_000}),
        event("w1", account=pro, feature="nope"),
        event("w2", account=pro, credits=5_000, metadata={"run": 1}),
    ]

    answered = batch(client, service, events)

    results = answered.json()["results"]
    assert [r["status"] for r in results] == [200, 404, 200]
    assert results[0]["warnings"] == [
        {"code": "allowance_90", "message": "90 % of monthly allowance used"}
    ]
    assert results[2]["would_refuse"]["code"] == "insufficient_credits"
    for index in (0, 2):
        body = {k: v for k, v in events[index].items() if k != "idempotency_key"}
        alone = client.post(
            "/v1/usage", json=body, headers={**service, "Idempotency-Key": f"w{index}"}
        )
        assert results[index] == {**alone.json(), "index": index, "status": 200}
    adapter = TypeAdapter(BatchOut)
    assert answered.content == adapter.dump_json(adapter.validate_json(answered.content))
    assert_books_balance(meter)


def test_a_replayed_batch_changes_nothing_and_a_reused_key_is_409_for_its_event(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    events = [event(f"r{i}", usage={"tokens": 10 * (i + 1)}) for i in range(5)]
    first = batch(client, service, events)
    count = ledger_size(meter, acme)

    again = batch(client, service, events)

    assert again.content == first.content
    assert meter.balance(acme).available == 1_000 - 150
    assert ledger_size(meter, acme) == count
    assert usage_count(meter, acme) == 5
    reused = batch(client, service, [event("r0", usage={"tokens": 999}), event("r5", credits=1)])
    assert [r["status"] for r in reused.json()["results"]] == [409, 200]
    assert reused.json()["results"][0]["error"]["type"] == "idempotency_conflict"
    assert meter.balance(acme).available == 849
    assert_books_balance(meter)


def test_a_batch_of_1000_events_is_accepted_and_1001_is_422_changing_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    meter.put_feature("ping", rates={"calls": 0})
    too_many = batch(client, service, [event(f"k{i}", feature="ping") for i in range(1_001)])

    assert too_many.status_code == 422
    assert too_many.json()["error"]["type"] == "invalid_request"
    assert usage_count(meter, acme) == 0
    assert batch(client, service, []).status_code == 422

    full = batch(client, service, [event(f"k{i}", feature="ping") for i in range(1_000)])

    assert full.status_code == 200
    assert [r["status"] for r in full.json()["results"]] == [200] * 1_000
    assert usage_count(meter, acme) == 1_000
    assert_books_balance(meter)


def test_a_batch_with_a_malformed_event_is_422_and_changes_nothing(
    client: TestClient, keys: Keys, meter: CreditMeter, acme: str
) -> None:
    events = [event("m0", credits=10), event("m1", usage={"tokens": 1.5})]

    refused = batch(client, keys.header("service"), events)

    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["location"] == "body.events.1.usage.tokens"
    no_key = batch(client, keys.header("service"), [{"account": acme, "feature": "chat"}])
    assert no_key.status_code == 422
    assert batch(client, keys.header("account"), [event("m2")]).status_code == 403
    assert usage_count(meter, acme) == 0
    assert meter.balance(acme).available == 1_000
    assert_books_balance(meter)


# Checks.


def test_check_prices_and_answers_without_changing_anything(
    client: TestClient, service: dict[str, str], meter: CreditMeter, pro: str
) -> None:
    meter.put_feature("llm.chat", rates={"input_tokens": 1, "output_tokens": 1}, multiplier="1.5")
    count = ledger_size(meter, pro)

    def check(body: Json) -> Json:
        answered = client.post(f"/v1/accounts/{pro}/check", json=body, headers=service)
        assert answered.status_code == 200
        result: Json = answered.json()
        return result

    llm = check({"feature": "llm.chat", "usage": {"input_tokens": 1_000, "output_tokens": 500}})
    short = check({"feature": "chat", "credits": 20_001})

    assert llm == {
        "allowed": True,
        "cost": 2_250,
        "available": 20_000,
        "reason": None,
        "warnings": [],
    }
    assert (short["allowed"], short["cost"], short["reason"]) == (
        False,
        20_001,
        "insufficient_credits",
    )
    assert ledger_size(meter, pro) == count
    assert usage_count(meter, pro) == 0
    assert meter.balance(pro).available == 20_000
    assert_books_balance(meter)


def test_check_is_for_service_keys_and_hides_other_accounts(
    client: TestClient, keys: Keys, meter: CreditMeter, acme: str
) -> None:
    body = {"feature": "chat", "credits": 1}

    def status(account: str, role: str) -> int:
        path = f"/v1/accounts/{account}/check"
        return client.post(path, json=body, headers=keys.header(role)).status_code

    assert status(acme, "service") == 200
    assert status(acme, "account") == 403
    assert status(acme, "other") == 404
    assert status("nobody", "service") == 404
    not_found = client.post(
        f"/v1/accounts/{acme}/check", json={"feature": "nope"}, headers=keys.header("service")
    )
    assert not_found.status_code == 404
    assert_books_balance(meter)


# Bad input.


BAD_USAGE: list[tuple[Json, int]] = [
    ({"feature": "chat", "usage": {"tokens": 1.5}}, 422),
    ({"feature": "chat", "usage": {"tokens": True}}, 422),
    ({"feature": "chat", "usage": {"tokens": -1}}, 422),
    ({"feature": "chat", "usage": {"tokens": "-1"}}, 422),
    ({"feature": "chat", "usage": {"tokens": "1e3"}}, 422),
    ({"feature": "chat", "usage": {"tokens": 10**18 + 1}}, 422),
    ({"feature": "chat", "usage": [["tokens", 1]]}, 422),
    ({"feature": "chat", "usage": {"pixels": 1}}, 422),
    ({"feature": "chat", "credits": 10.5}, 422),
    ({"feature": "chat", "credits": -1}, 422),
    ({"feature": "chat", "credits": "10"}, 422),
    ({"feature": "chat", "credits": True}, 422),
    ({"feature": "chat", "credits": 10**15 + 1}, 422),
    ({"feature": "chat", "credits": 10, "usage": {"tokens": 1}}, 422),
    ({"feature": "chat", "credits": 10, "colour": "red"}, 422),
    ({"feature": "chat", "credits": 10, "provider_cost": 0.01}, 422),
    ({"feature": "chat", "credits": 10, "model": "gpt\x00"}, 422),
    ({"feature": "chat", "credits": 10, "metadata": {"note": ["a\x00b"]}}, 422),
    ({"feature": 7}, 422),
    ({"feature": "nope"}, 404),
    ({"feature": "chat", "account": "nobody"}, 404),
]


def test_bad_usage_is_refused_and_changes_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    count = ledger_size(meter, acme)

    for body, status in BAD_USAGE:
        refused = client.post("/v1/usage", json={"account": acme, **body}, headers=service)
        assert refused.status_code == status, body
        assert refused.json()["error"]["type"] == {422: "invalid_request", 404: "not_found"}[status]

    assert meter.balance(acme).available == 1_000
    assert ledger_size(meter, acme) == count
    assert_books_balance(meter)


def test_malformed_json_is_400_and_a_usage_needs_a_service_key(
    client: TestClient, keys: Keys, meter: CreditMeter, acme: str
) -> None:
    malformed = client.post(
        "/v1/usage",
        content=b'{"account": "acme",',
        headers={**keys.header("service"), "Content-Type": "application/json"},
    )
    body = {"account": acme, "feature": "chat", "credits": 1}

    not_a_number = client.post(
        "/v1/usage",
        content=b'{"account": "acme", "feature": "chat", "metadata": {"x": NaN}}',
        headers={**keys.header("service"), "Content-Type": "application/json"},
    )

    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "malformed_json"
    assert not_a_number.status_code == 422
    assert client.post("/v1/usage", json=body, headers=keys.header("account")).status_code == 403
    assert client.post("/v1/usage", json=body).status_code == 401
    assert meter.balance(acme).available == 1_000
    assert_books_balance(meter)


def test_a_settle_with_an_unknown_unit_is_422_and_leaves_the_hold_pending(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    hold = authorize(client, service, credits=300).json()

    refused = client.post(
        f"/v1/holds/{hold['id']}/settle", json={"usage": {"pixels": 3}}, headers=service
    )
    floaty = client.post(
        f"/v1/holds/{hold['id']}/settle", json={"usage": {"tokens": 0.5}}, headers=service
    )

    assert (refused.status_code, floaty.status_code) == (422, 422)
    assert client.get(f"/v1/holds/{hold['id']}", headers=service).json()["status"] == "pending"
    assert (meter.balance(acme).available, meter.balance(acme).held) == (700, 300)
    assert_books_balance(meter)


# Per-model rates.


@pytest.fixture
def chat_models(meter: CreditMeter, acme: str) -> str:
    """``llm.chat``: 1,038 credits for ``TURN`` at gpt-4o's rates, 519 at the default."""
    meter.put_feature(
        "llm.chat",
        rates={"input_tokens": "0.25", "output_tokens": 1},
        models={"gpt-4o": {"input_tokens": "0.5", "output_tokens": 2}},
        multiplier="1.5",
    )
    meter.grant(acme, 9_000, source="purchase")
    return acme


TURN = {"input_tokens": 384, "output_tokens": 250}


def test_a_dated_model_name_is_charged_at_its_model_s_rates(
    client: TestClient, service: dict[str, str], meter: CreditMeter, chat_models: str
) -> None:
    used = use(
        client, service, chat_models, feature="llm.chat", usage=TURN, model="gpt-4o-2024-08-06"
    )
    hold = client.post(
        "/v1/holds",
        json={"account": chat_models, "feature": "llm.chat", "estimate": TURN, "model": "gpt-4o"},
        headers=service,
    )
    settled = client.post(
        f"/v1/holds/{hold.json()['id']}/settle",
        json={"usage": TURN, "model": "gpt-4o-2024-11-20"},
        headers=service,
    )

    assert (used.status_code, used.json()["credits"]) == (200, 1_038)
    assert (settled.status_code, settled.json()["charged"]) == (200, 1_038)
    assert_books_balance(meter)


def test_a_model_the_feature_cannot_price_is_422_unknown_model_and_changes_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, chat_models: str
) -> None:
    before = (meter.balance(chat_models).available, usage_count(meter, chat_models))

    used = use(client, service, chat_models, feature="llm.chat", usage=TURN, model="gpt-4.1")
    checked = client.post(
        f"/v1/accounts/{chat_models}/check",
        json={"feature": "llm.chat", "usage": TURN, "model": "gpt-4.1"},
        headers=service,
    )

    assert used.status_code == 422
    assert used.json()["error"]["type"] == "unknown_model"
    assert (used.json()["error"]["model"], used.json()["error"]["feature"]) == (
        "gpt-4.1",
        "llm.chat",
    )
    assert "'gpt-4.1'" in used.json()["error"]["message"]
    assert checked.status_code == 422
    assert (meter.balance(chat_models).available, usage_count(meter, chat_models)) == before


def test_an_unknown_model_priced_at_the_default_rates_is_flagged_and_counted(
    client: TestClient, service: dict[str, str], meter: CreditMeter, chat_models: str
) -> None:
    meter.put_feature(
        "llm.lenient",
        rates={"input_tokens": "0.25", "output_tokens": 1},
        models={"gpt-4o": {"input_tokens": "0.5", "output_tokens": 2}},
        multiplier="1.5",
        unknown_models="default_rates",
    )
    counted_before = metric(client, "llm.lenient")

    used = use(client, service, chat_models, feature="llm.lenient", usage=TURN, model="gpt-4.1")
    known = use(client, service, chat_models, feature="llm.lenient", usage=TURN, model="gpt-4o")

    assert (used.status_code, used.json()["credits"]) == (200, 519)
    listed = client.get(
        f"/v1/accounts/{chat_models}/usage", params={"feature": "llm.lenient"}, headers=service
    ).json()["data"]
    flags = {u["id"]: u["unknown_model"] for u in listed}
    assert flags == {used.json()["id"]: True, known.json()["id"]: False}
    assert metric(client, "llm.lenient") - counted_before == 1


def metric(client: TestClient, feature: str) -> float:
    return sample(
        client.get("/metrics").text, "creditmeter_unknown_model_usage_total", feature=feature
    )


def test_a_price_beyond_the_range_of_credits_is_422_and_changes_nothing(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    """Library bug: nothing bounds the credits a usage is priced at (here 10^18 units at
    100 credits each), and a settle (which never refuses) or a charge when not enforcing
    stores them in a BIGINT column. PostgreSQL refuses the value (``DataError``, which
    ``meter._retrying`` turns into ``InvalidRequest``); SQLite raises ``OverflowError``
    from the driver, which escapes as a 500. Pricing should refuse such a usage itself."""
    meter.put_feature("render", rates={"frames": 100})
    hold = authorize(client, service, feature="render", credits=10).json()
    huge = {"frames": 10**18}

    settled = client.post(f"/v1/holds/{hold['id']}/settle", json={"usage": huge}, headers=service)

    assert settled.status_code == 422
    assert client.get(f"/v1/holds/{hold['id']}", headers=service).json()["status"] == "pending"
    meter.change_settings({"enforcement": "off"}, changed_by="t")
    assert use(client, service, acme, feature="render", usage=huge).status_code == 422
    assert meter.balance(acme).available == 990
    assert_books_balance(meter)


# The OpenAPI document.


def test_every_metering_body_has_an_example_and_quantities_are_never_numbers(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    for name in ("HoldCreate", "HoldSettle", "UsageCreate", "UsageBatch", "CheckRequest"):
        assert schemas[name]["examples"], name
    quantity = schemas["UsageCreate"]["properties"]["usage"]["anyOf"][0]["additionalProperties"]
    assert {option["type"] for option in quantity["anyOf"]} == {"integer", "string"}
    for path in ("/v1/holds", "/v1/usage", "/v1/usage/batch", "/v1/accounts/{account_id}/check"):
        assert document["paths"][path]["post"]["description"], path
    assert "402" in document["paths"]["/v1/usage"]["post"]["responses"]


def test_metering_bodies_are_their_response_models_as_fastapi_would_serialize_them(
    client: TestClient, service: dict[str, str], acme: str
) -> None:
    """The metering endpoints serialize their response models themselves: each body is,
    byte for byte, what FastAPI makes of the model, and the document names the model."""
    held = authorize(client, service, estimate={"tokens": 300})
    settled_id, released_id = held.json()["id"], authorize(client, service, credits=10).json()["id"]
    answers: dict[tuple[str, str], tuple[Response, type[BaseModel]]] = {
        ("post", "/v1/holds"): (held, HoldOut),
        ("get", "/v1/holds/{hold_id}"): (
            client.get(f"/v1/holds/{settled_id}", headers=service),
            HoldOut,
        ),
        ("post", "/v1/holds/{hold_id}/settle"): (
            client.post(f"/v1/holds/{settled_id}/settle", json={}, headers=service),
            SettleOut,
        ),
        ("post", "/v1/holds/{hold_id}/release"): (
            client.post(f"/v1/holds/{released_id}/release", headers=service),
            HoldOut,
        ),
        ("post", "/v1/usage"): (use(client, service, acme, feature="chat", credits=5), UsageOut),
        ("post", "/v1/usage/batch"): (
            batch(client, service, [event("b0", credits=1), event("b1", feature="nope")]),
            BatchOut,
        ),
        ("post", "/v1/accounts/{account_id}/check"): (
            client.post(
                f"/v1/accounts/{acme}/check",
                json={"feature": "chat", "credits": 5},
                headers=service,
            ),
            CheckOut,
        ),
    }
    document = client.get("/openapi.json").json()

    for (method, path), (answered, model) in answers.items():
        assert answered.status_code == 200, path
        assert answered.headers["content-type"] == "application/json", path
        adapter = TypeAdapter(model)
        assert answered.content == adapter.dump_json(adapter.validate_json(answered.content)), path
        documented = document["paths"][path][method]["responses"]["200"]["content"]
        assert documented["application/json"]["schema"]["$ref"].endswith(model.__name__), path


# Balancing holds.


def test_a_balancing_hold_reserves_what_there_is_and_says_what_was_asked(
    client: TestClient, service: dict[str, str], meter: CreditMeter, acme: str
) -> None:
    body = {"account": acme, "feature": "chat", "estimate": {"tokens": 1_500}, "balancing": True}
    response = client.post("/v1/holds", json=body, headers=service)

    assert response.status_code == 200
    hold = HoldOut.model_validate(response.json())
    assert (hold.credits, hold.reserved, hold.requested) == (1_000, 1_000, 1_500)
    assert client.get(f"/v1/holds/{hold.id}", headers=service).json() == response.json()
    settled = client.post(f"/v1/holds/{hold.id}/settle", json={}, headers=service)
    assert settled.json()["credits"] == 1_000
    refused = client.post("/v1/holds", json=body, headers=service)
    assert refused.status_code == 402
    assert (refused.json()["error"]["required"], refused.json()["error"]["available"]) == (
        1_500,
        0,
    )
    plain = client.post("/v1/holds", json={**body, "balancing": False}, headers=service)
    assert plain.status_code == 402
    assert_books_balance(meter)


def test_a_plain_hold_says_it_asked_for_no_less(
    client: TestClient, service: dict[str, str], acme: str
) -> None:
    body = {"account": acme, "feature": "chat", "credits": 10, "balancing": True}
    response = client.post("/v1/holds", json=body, headers=service)

    assert (response.json()["credits"], response.json()["requested"]) == (10, None)
    refused = client.post("/v1/holds", json={**body, "balancing": "yes"}, headers=service)
    assert refused.status_code == 422


def test_an_accounts_pending_holds_are_listed(
    client: TestClient, keys: Keys, meter: CreditMeter
) -> None:
    meter.put_feature("chat", rates={"calls": 1})
    meter.grant("acme", 100, reason="to hold")
    first = meter.authorize("acme", "chat", credits=10)
    second = meter.authorize("acme", "chat", credits=20)
    meter.release(first.id)
    listed = client.get("/v1/accounts/acme/holds", headers=keys.header("service"))
    assert listed.status_code == 200
    assert [(h["id"], h["credits"]) for h in listed.json()["data"]] == [(second.id, 20)]
    assert listed.json()["next_cursor"] is None
