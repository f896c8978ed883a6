"""What the client puts on the wire and how it reads answers, against a mock transport."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx2
import pytest

from creditmeter import CreditMeter, InvalidRequest, UsageEvent
from creditmeter.client import CreditMeterClient, ServiceUnavailable
from creditmeter.core.meter import Conveniences, Meter

Handler = Callable[[httpx2.Request], httpx2.Response]

HOLD = {
    "id": "hold_1",
    "account": "acme",
    "feature": "llm.chat",
    "credits": 4500,
    "reserved": 4500,
    "status": "pending",
    "created_at": "2026-03-10T12:00:00Z",
    "expires_at": "2026-03-10T12:05:00Z",
    "usage_id": None,
    "would_refuse": None,
}


def client(handler: Handler) -> CreditMeterClient:
    return CreditMeterClient(
        "http://meter.test/", "cm_secret", transport=httpx2.MockTransport(handler)
    )


def test_a_hold_request_carries_the_key_the_idempotency_key_and_exact_decimals() -> None:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=HOLD)

    with client(answer) as meter:
        hold = meter.authorize(
            "acme",
            "llm.chat",
            estimate={"input_tokens": 2000, "seconds": Decimal("2.50"), "gb": Decimal("1E-8")},
            ttl=timedelta(minutes=5),
            idempotency_key="req-1",
        )
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "http://meter.test/v1/holds")
    assert request.headers["Authorization"] == "Bearer cm_secret"
    assert request.headers["Idempotency-Key"] == "req-1"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "account": "acme",
        "feature": "llm.chat",
        "estimate": {"input_tokens": 2000, "seconds": "2.50", "gb": "0.00000001"},
        "ttl_seconds": 300,
    }
    assert hold.created_at == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert hold.expires_at - hold.created_at == timedelta(minutes=5)


def test_filters_become_the_contract_query() -> None:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"data": [], "next_cursor": None})

    since = datetime(2026, 3, 1, tzinfo=UTC)
    with client(answer) as meter:
        page = meter.transactions("acme", types=("usage", "refund"), since=since, limit=10)
    assert page.data == ()
    params = seen[0].url.params
    assert seen[0].url.path == "/v1/accounts/acme/transactions"
    assert params.get_list("type") == ["usage", "refund"]
    assert params["from"] == "2026-03-01T00:00:00+00:00"
    assert params["limit"] == "10"
    assert "to" not in params
    assert "cursor" not in params


def test_fractions_in_answers_are_decimals_never_floats() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        content = b'{"data": [{"key": "chat", "name": "Chat", "pool": "chat", '
        content += b'"rates": {"tokens": "0.002"}, "models": {}, "multiplier": 1.5, "version": 2}]'
        content += b', "next_cursor": null}'
        return httpx2.Response(200, content=content, headers={"Content-Type": "application/json"})

    with client(answer) as meter:
        (feature,) = meter.features()
    assert feature.rule.rates == {"tokens": Decimal("0.002")}
    assert feature.rule.multiplier == Decimal("1.5")
    assert isinstance(feature.rule.multiplier, Decimal)


def test_what_cannot_be_sent_is_refused_before_sending() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("nothing should be sent")

    with client(answer) as meter:
        with pytest.raises(InvalidRequest, match="whole number of seconds"):
            meter.authorize("acme", "chat", credits=5, ttl=timedelta(seconds=1.5))
        with pytest.raises(InvalidRequest, match="either a usage_id or an amount"):
            meter.refund("acme")
        with pytest.raises(InvalidRequest, match=r"batch events \[0\] have no idempotency_key"):
            meter.charge_many([UsageEvent("a", "f")])


def test_a_busy_service_says_when_to_retry() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        body = {"error": {"type": "unavailable", "message": "the database is unavailable"}}
        return httpx2.Response(503, json=body, headers={"Retry-After": "1"})

    with client(answer) as meter, pytest.raises(ServiceUnavailable) as busy:
        meter.balance("acme")
    assert (busy.value.status, busy.value.retry_after) == (503, 1)


def test_a_timeout_is_service_unavailable() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    with client(answer) as meter, pytest.raises(ServiceUnavailable, match="no answer in time"):
        meter.charge("acme", "chat", idempotency_key="k")


def test_a_csv_export_is_written_as_it_comes_and_its_rows_counted() -> None:
    csv_text = 'id,description\ntxn_2,"two\nlines"\ntxn_1,one\n'

    def answer(request: httpx2.Request) -> httpx2.Response:
        assert request.url.params["format"] == "csv"
        return httpx2.Response(200, text=csv_text, headers={"Content-Type": "text/csv"})

    out = io.StringIO()
    with client(answer) as meter:
        assert meter.export_transactions_csv("acme", out) == 2
    assert out.getvalue() == csv_text


def test_ids_are_one_path_segment_each() -> None:
    paths: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        paths.append(request.url.raw_path.decode())
        return httpx2.Response(204)

    with client(answer) as meter:
        meter.revoke_api_key("key/1?x")
    assert paths == ["/v1/api-keys/key%2F1%3Fx"]


def test_account_search_and_breakdowns_become_the_contract_query_and_exact_decimals() -> None:
    seen: list[httpx2.Request] = []
    row = {
        "key": "gpt-4o",
        "events": 3,
        "credits": 2200,
        "billable_usd": "2.75",
        "provider_cost_usd": "0.0000000001",
        "margin_usd": "2.7499999999",
        "margin_ratio": None,
    }

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path == "/v1/admin/accounts":
            return httpx2.Response(200, json={"data": [], "next_cursor": None})
        return httpx2.Response(200, json={"data": [row]})

    since, until = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    with client(answer) as meter:
        page = meter.search_accounts(query="ac", level="low", sort="available", descending=True)
        (model,) = meter.model_stats(since=since, until=until)
    assert (page.items, page.next_cursor) == ([], None)
    assert dict(seen[0].url.params) == {
        "q": "ac",
        "level": "low",
        "sort": "available",
        "order": "desc",
        "limit": "50",
    }
    assert seen[1].url.params["until"] == "2026-04-01T00:00:00+00:00"
    assert model.provider_cost_usd == Decimal("1E-10")
    assert (model.margin_usd, model.margin_ratio) == (Decimal("2.7499999999"), None)


METERS: tuple[type[Meter], ...] = (CreditMeter, CreditMeterClient)
"""Both meters have the verbs of a :class:`Meter`, with its parameters: mypy checks it."""


def test_both_meters_hold_in_one_way() -> None:
    assert all(meter.holding is Conveniences.holding for meter in METERS)
