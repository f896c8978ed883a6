"""The ledger, usage, summaries, grants and refunds over HTTP."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.api.routers import ledger
from tests.api.conftest import Keys
from tests.conftest import Clock

Json = dict[str, Any]


@pytest.fixture
def priced(meter: CreditMeter, keys: Keys) -> Keys:
    """Features ``chat`` (1 credit a token) and ``image`` (100 an image) on top of ``keys``."""
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_feature("image", rates={"images": 100})
    return keys


def all_pages(client: TestClient, path: str, keys: Keys, **params: Any) -> list[Json]:
    """Every item of a list endpoint, following ``next_cursor``."""
    items: list[Json] = []
    cursor: str | None = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=query, headers=keys.header("service"))
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert len(body["data"]) == params["limit"]
    raise AssertionError("too many pages")


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# The ledger.


def test_transactions_newest_first_with_the_split_across_grants(
    client: TestClient, meter: CreditMeter, priced: Keys, clock: Clock
) -> None:
    meter.grant("acme", 2_000, source="bonus")
    clock.advance(minutes=1)
    meter.grant("acme", 5_000, source="purchase")
    clock.advance(minutes=1)
    charge = meter.charge("acme", "chat", usage={"tokens": 3_000}, member="ann")

    response = client.get("/v1/accounts/acme/transactions", headers=priced.header("account"))

    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [t["type"] for t in body["data"]] == ["usage", "grant", "grant"]
    usage = body["data"][0]
    assert usage["id"] == charge.transaction_id
    assert usage["account"] == "acme"
    assert usage["amount"] == -3_000
    assert (usage["balance_before"], usage["balance_after"]) == (7_000, 4_000)
    assert usage["usage_id"] == charge.usage_id
    assert usage["hold_id"] is None
    assert usage["created_at"] == "2026-03-10T12:02:00Z"
    split = {p["grant_source"]: p["amount"] for p in usage["postings"]}
    assert split == {"bonus": -2_000, "purchase": -1_000, None: 3_000}
    assert {p["ledger_account"] for p in usage["postings"]} == {"account:acme", "consumption"}
    assert [(t["balance_before"], t["balance_after"]) for t in body["data"][1:]] == [
        (2_000, 7_000),
        (0, 2_000),
    ]
    assert meter.verify() == []


def test_only_the_account_itself_and_staff_read_its_transactions(
    client: TestClient, priced: Keys
) -> None:
    path = "/v1/accounts/acme/transactions"
    for role in ("account", "service", "admin", "superadmin"):
        assert client.get(path, headers=priced.header(role)).status_code == 200
    assert client.get(path, headers=priced.header("other")).status_code == 404
    assert client.get(path).status_code == 401
    missing = client.get("/v1/accounts/nobody/transactions", headers=priced.header("service"))
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"


def test_transaction_filters_by_type_and_time(
    client: TestClient, meter: CreditMeter, priced: Keys, clock: Clock
) -> None:
    meter.grant("acme", 10_000)
    clock.advance(hours=1)
    meter.charge("acme", "chat", usage={"tokens": 100})
    meter.refund("acme", amount=50, reason="sorry")
    clock.advance(hours=1)
    meter.charge("acme", "image", usage={"images": 2})

    def types(**params: Any) -> list[str]:
        response = client.get(
            "/v1/accounts/acme/transactions", params=params, headers=priced.header("service")
        )
        assert response.status_code == 200, response.text
        return [t["type"] for t in response.json()["data"]]

    assert types() == ["usage", "refund", "usage", "grant"]
    assert types(type="usage") == ["usage", "usage"]
    assert types(type=["grant", "refund"]) == ["refund", "grant"]
    assert types(**{"from": "2026-03-10T13:00:00Z"}) == ["usage", "refund", "usage"]
    assert types(to="2026-03-10T13:00:00+00:00") == ["grant"]
    window = {"from": "2026-03-10T14:00:00+01:00", "to": "2026-03-10T14:00:00Z"}
    assert types(**window) == ["refund", "usage"]
    assert meter.verify() == []


BAD_QUERIES: list[dict[str, str | int]] = [
    {"type": "gift"},
    {"from": "2026-03-10T12:00:00"},
    {"to": "yesterday"},
    {"limit": 0},
    {"limit": 1001},
    {"cursor": "not a cursor"},
    {"format": "xml"},
    {"from": "0001-01-01T00:00:00+01:00"},
]


def test_bad_transaction_queries_are_422(client: TestClient, priced: Keys) -> None:
    for params in BAD_QUERIES:
        response = client.get(
            "/v1/accounts/acme/transactions", params=params, headers=priced.header("service")
        )
        assert response.status_code == 422, params
        assert response.json()["error"]["type"] == "invalid_request"


def test_transaction_pages_have_no_gaps_and_no_duplicates(
    client: TestClient, meter: CreditMeter, priced: Keys, clock: Clock
) -> None:
    meter.grant("acme", 1_000)
    for i in range(10):
        if i % 3 == 0:
            clock.advance(seconds=1)
        meter.charge("acme", "chat", usage={"tokens": i + 1})
    everything = meter.transactions("acme", limit=1000).data

    paged = all_pages(client, "/v1/accounts/acme/transactions", priced, limit=3)
    usage_only = all_pages(client, "/v1/accounts/acme/transactions", priced, limit=4, type="usage")

    assert [t["id"] for t in paged] == [t.id for t in everything]
    assert len(paged) == 11
    assert [t["amount"] for t in usage_only] == [-n for n in range(10, 0, -1)]
    assert meter.verify() == []


def test_transactions_as_csv_stream_every_matching_row(
    client: TestClient,
    meter: CreditMeter,
    priced: Keys,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ledger, "CSV_BATCH", 2)
    meter.grant("acme", 1_000, reason="welcome, friend")
    for tokens in (10, 20, 30, 40):
        clock.advance(minutes=1)
        meter.charge("acme", "chat", usage={"tokens": tokens})

    response = client.get(
        "/v1/accounts/acme/transactions",
        params={"format": "csv", "limit": 1},
        headers=priced.header("account"),
    )
    only_usage = client.get(
        "/v1/accounts/acme/transactions",
        params={"format": "csv", "type": "usage", "from": "2026-03-10T12:02:00Z"},
        headers=priced.header("account"),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "acme-transactions.csv" in response.headers["content-disposition"]
    rows = csv_rows(response.text)
    assert response.text.startswith("id,created_at,type,amount,")
    assert response.text.count("id,created_at") == 1
    assert [(r["type"], r["amount"], r["balance_after"]) for r in rows] == [
        ("usage", "-40", "900"),
        ("usage", "-30", "940"),
        ("usage", "-20", "970"),
        ("usage", "-10", "990"),
        ("grant", "1000", "1000"),
    ]
    assert rows[-1]["description"] == "welcome, friend"
    assert rows[0]["created_at"] == "2026-03-10T12:04:00+00:00"
    assert [r["amount"] for r in csv_rows(only_usage.text)] == ["-40", "-30", "-20"]
    assert meter.verify() == []


def test_csv_of_an_unknown_or_foreign_account_is_404_not_an_empty_file(
    client: TestClient, priced: Keys
) -> None:
    for path, role in (("nobody", "service"), ("acme", "other")):
        response = client.get(
            f"/v1/accounts/{path}/transactions?format=csv", headers=priced.header(role)
        )
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"
    empty = client.get("/v1/accounts/globex/usage?format=csv", headers=priced.header("other"))
    assert empty.status_code == 200
    assert empty.text.strip() == ",".join(ledger.USAGE_CSV_COLUMNS)


# Usage.


def test_usage_list_with_filters_pages_and_csv(
    client: TestClient,
    meter: CreditMeter,
    priced: Keys,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ledger, "CSV_BATCH", 2)
    meter.grant("acme", 10_000)
    ids = []
    for i, (feature, member) in enumerate(
        [("chat", "ann"), ("image", "bob"), ("chat", "bob"), ("chat", "ann"), ("image", "ann")]
    ):
        clock.advance(minutes=1)
        usage = {"tokens": 100 * (i + 1)} if feature == "chat" else {"images": 1}
        ids.append(meter.charge("acme", feature, usage=usage, member=member, model="m1").usage_id)

    first = client.get("/v1/accounts/acme/usage", headers=priced.header("account"))
    paged = all_pages(client, "/v1/accounts/acme/usage", priced, limit=2)
    chats = all_pages(client, "/v1/accounts/acme/usage", priced, limit=1, feature="chat")
    anns = client.get(
        "/v1/accounts/acme/usage",
        params={"member": "ann", "from": "2026-03-10T12:02:00Z", "to": "2026-03-10T12:05:00Z"},
        headers=priced.header("service"),
    ).json()["data"]
    exported = client.get(
        "/v1/accounts/acme/usage", params={"format": "csv"}, headers=priced.header("admin")
    )

    newest = first.json()["data"][0]
    assert newest["id"] == ids[-1]
    assert newest["account"] == "acme"
    assert (newest["feature"], newest["member"], newest["model"]) == ("image", "ann", "m1")
    assert newest["quantities"] == {"images": 1}
    assert (newest["credits"], newest["charged"], newest["refunded"]) == (100, 100, 0)
    assert newest["feature_version"] == 1
    assert [u["id"] for u in paged] == ids[::-1]
    assert [u["credits"] for u in chats] == [400, 300, 100]
    assert [u["id"] for u in anns] == [ids[3]]
    rows = csv_rows(exported.text)
    assert exported.headers["content-type"].startswith("text/csv")
    assert [r["id"] for r in rows] == ids[::-1]
    assert rows[1] | {"created_at": ""} == {
        "id": ids[3],
        "created_at": "",
        "feature": "chat",
        "feature_version": "1",
        "model": "m1",
        "member": "ann",
        "quantities": '{"tokens": 400}',
        "credits": "400",
        "charged": "400",
        "debited": "0",
        "uncollected": "0",
        "refunded": "0",
        "unlimited": "false",
        "success": "true",
        "hold_id": "",
        "provider_cost": "",
        "price_book_version": "",
        "unknown_model": "false",
    }
    assert meter.verify() == []


def test_the_usage_csv_has_the_provider_s_cost_and_the_price_book_version(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    meter.grant("acme", 1_000, source="purchase")
    meter.sync_prices(["openai"])
    meter.put_feature("llm.cost", cost_plus=True)
    meter.put_feature(
        "llm.rated",
        rates={"tokens": 1},
        models={"gpt-4o": {"tokens": 2}},
        unknown_models="default_rates",
    )
    meter.charge(
        "acme", "llm.cost", model="gpt-4o", usage={"input_tokens": 384, "output_tokens": 250}
    )
    meter.charge("acme", "llm.rated", model="o3", usage={"tokens": 5})

    exported = client.get(
        "/v1/accounts/acme/usage", params={"format": "csv"}, headers=priced.header("admin")
    )

    rows = csv_rows(exported.text)
    assert [(r["provider_cost"], r["price_book_version"], r["unknown_model"]) for r in rows] == [
        ("", "", "true"),
        ("0.00346", "1", "false"),
    ]


def test_usage_summary_by_day_feature_and_member(
    client: TestClient, meter: CreditMeter, priced: Keys, clock: Clock
) -> None:
    meter.grant("acme", 10_000)
    meter.charge("acme", "chat", usage={"tokens": 100}, member="ann")
    meter.charge("acme", "image", usage={"images": 3}, member="bob")
    clock.advance(days=1)
    charged = meter.charge("acme", "chat", usage={"tokens": 50}, member="ann")
    meter.refund("acme", usage_id=charged.usage_id)
    meter.charge("acme", "chat", usage={"tokens": 7})

    def summary(**params: str) -> list[Json]:
        response = client.get(
            "/v1/accounts/acme/usage/summary", params=params, headers=priced.header("account")
        )
        assert response.status_code == 200, response.text
        data: list[Json] = response.json()["data"]
        return data

    assert summary() == [
        {"key": "2026-03-10", "count": 2, "credits": 400, "charged": 400},
        {"key": "2026-03-11", "count": 2, "credits": 57, "charged": 7},
    ]
    assert summary(group_by="feature") == [
        {"key": "chat", "count": 3, "credits": 157, "charged": 107},
        {"key": "image", "count": 1, "credits": 300, "charged": 300},
    ]
    assert summary(group_by="member", feature="chat") == [
        {"key": "", "count": 1, "credits": 7, "charged": 7},
        {"key": "ann", "count": 2, "credits": 150, "charged": 100},
    ]
    assert summary(group_by="month", **{"from": "2026-03-11T00:00:00Z"}) == [
        {"key": "2026-03-01", "count": 2, "credits": 57, "charged": 7},
    ]
    bad = client.get(
        "/v1/accounts/acme/usage/summary?group_by=year", headers=priced.header("service")
    )
    assert bad.status_code == 422
    foreign = client.get("/v1/accounts/acme/usage/summary", headers=priced.header("other"))
    assert foreign.status_code == 404
    assert meter.verify() == []


# Grants.


def test_a_superadmin_grants_credits_and_an_admin_lists_them(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    body = {
        "amount": 5_000,
        "source": "promotional",
        "priority": 5,
        "pool": "chat",
        "effective_at": "2026-03-10T12:00:00Z",
        "expires_at": "2026-06-30T00:00:00+02:00",
        "reason": "launch week",
        "reference": "campaign-7",
    }

    granted = client.post(
        "/v1/accounts/acme/grants",
        json=body,
        headers={**priced.header("superadmin"), "Idempotency-Key": "g-1"},
    )
    listed = client.get("/v1/accounts/acme/grants", headers=priced.header("admin"))

    assert granted.status_code == 200, granted.text
    result = granted.json()
    assert result["account"] == "acme"
    assert (result["amount"], result["available_after"]) == (5_000, 5_000)
    assert listed.status_code == 200
    assert listed.json()["next_cursor"] is None
    [grant] = listed.json()["data"]
    assert grant == {
        "id": result["grant_id"],
        "account": "acme",
        "source": "promotional",
        "pool": "chat",
        "priority": 5,
        "amount": 5_000,
        "remaining": 5_000,
        "held": 0,
        "effective_at": "2026-03-10T12:00:00Z",
        "expires_at": "2026-06-29T22:00:00Z",
        "created_at": "2026-03-10T12:00:00Z",
        "period_start": None,
        "reference": "campaign-7",
        "voided_at": None,
    }
    [txn] = meter.transactions("acme").data
    assert txn.id == result["transaction_id"]
    assert txn.description == "launch week"
    assert meter.balance("acme").pools == {}
    assert meter.verify() == []


def test_a_grant_retried_with_its_key_is_granted_once(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    headers = {**priced.header("superadmin"), "Idempotency-Key": "grant-42"}
    first = client.post("/v1/accounts/acme/grants", json={"amount": 700}, headers=headers)
    again = client.post("/v1/accounts/acme/grants", json={"amount": 700}, headers=headers)
    changed = client.post("/v1/accounts/acme/grants", json={"amount": 701}, headers=headers)

    assert first.json() == again.json()
    assert changed.status_code == 409
    assert changed.json()["error"]["type"] == "idempotency_conflict"
    assert meter.balance("acme").available == 700
    assert len(meter.grants("acme")) == 1
    assert meter.verify() == []


def test_only_a_superadmin_grants_and_only_staff_above_service_list_grants(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    path = "/v1/accounts/acme/grants"
    for role in ("admin", "service", "account"):
        refused = client.post(path, json={"amount": 100}, headers=priced.header(role))
        assert refused.status_code == 403, role
        assert refused.json()["error"]["type"] == "forbidden"
    for role in ("service", "account", "other"):
        assert client.get(path, headers=priced.header(role)).status_code == 403, role
    assert client.post(path, json={"amount": 100}).status_code == 401
    missing = client.post(
        "/v1/accounts/nobody/grants", json={"amount": 100}, headers=priced.header("superadmin")
    )
    assert missing.status_code == 404
    assert (
        client.get("/v1/accounts/nobody/grants", headers=priced.header("admin")).status_code == 404
    )
    assert meter.balance("acme").available == 0
    assert meter.transactions("acme").data == ()
    assert meter.verify() == []


BAD_GRANTS: list[Json] = [
    {"amount": 1.5},
    {"amount": 100.5},
    {"amount": 10**16},
    {"amount": "100"},
    {"amount": 0},
    {"amount": -5},
    {"amount": 100, "source": "allowance"},
    {"amount": 100, "source": "gift"},
    {"amount": 100, "colour": "red"},
    {"amount": 100, "expires_at": "2026-04-01T00:00:00"},
    {"amount": 100, "expires_at": 1_800_000_000},
    {"amount": 100, "expires_at": "2026-03-01T00:00:00Z"},
    {"amount": 100, "effective_at": "2025-03-10T12:00:00Z", "expires_at": "2025-03-11T12:00:00Z"},
    {"amount": 100, "priority": 1.5},
    {"amount": 100, "priority": -1},
    {"amount": 100, "pool": "chat pool"},
    {"amount": 100, "reason": "nul\u0000"},
    {"amount": 100, "effective_at": "0001-01-01T00:00:00+01:00"},
    {"source": "admin"},
]


def test_bad_grants_are_422_and_change_nothing(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    for body in BAD_GRANTS:
        response = client.post(
            "/v1/accounts/acme/grants", json=body, headers=priced.header("superadmin")
        )
        assert response.status_code == 422, body
        assert response.json()["error"]["type"] == "invalid_request"
    assert meter.grants("acme", include_spent=True) == []
    assert meter.verify() == []


def test_the_grant_list_leaves_out_spent_grants_unless_asked(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    meter.grant("acme", 100, source="bonus")
    meter.grant("acme", 900, source="purchase")
    meter.charge("acme", "chat", usage={"tokens": 150})

    def remaining(**params: str) -> list[tuple[str, int]]:
        response = client.get(
            "/v1/accounts/acme/grants", params=params, headers=priced.header("admin")
        )
        return [(g["source"], g["remaining"]) for g in response.json()["data"]]

    assert remaining() == [("purchase", 850)]
    assert remaining(include_spent="true") == [("bonus", 0), ("purchase", 850)]
    assert meter.verify() == []


# Refunds.


def test_refunding_a_usage_puts_its_credits_back_in_the_grants_it_drew_from(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    meter.grant("acme", 1_000, source="bonus")
    meter.grant("acme", 5_000, source="purchase")
    charge = meter.charge("acme", "chat", usage={"tokens": 1_500})
    headers = {**priced.header("superadmin"), "Idempotency-Key": "refund-1"}

    refunded = client.post(
        "/v1/accounts/acme/refunds",
        json={"usage_id": charge.usage_id, "reason": "bad answer"},
        headers=headers,
    )
    again = client.post(
        "/v1/accounts/acme/refunds",
        json={"usage_id": charge.usage_id, "reason": "bad answer"},
        headers=headers,
    )
    twice = client.post(
        "/v1/accounts/acme/refunds",
        json={"usage_id": charge.usage_id},
        headers=priced.header("superadmin"),
    )

    assert refunded.status_code == 200, refunded.text
    txn = refunded.json()
    assert again.json() == txn
    assert (txn["type"], txn["account"], txn["usage_id"]) == ("refund", "acme", charge.usage_id)
    assert (txn["amount"], txn["balance_before"], txn["balance_after"]) == (1_500, 4_500, 6_000)
    assert txn["description"] == "bad answer"
    split = {p["grant_source"]: p["amount"] for p in txn["postings"]}
    assert split == {"bonus": 1_000, "purchase": 500, None: -1_500}
    assert twice.status_code == 422
    assert {g.source: g.remaining for g in meter.grants("acme")} == {
        "bonus": 1_000,
        "purchase": 5_000,
    }
    assert meter.usage_record(charge.usage_id).refunded == 1_500
    assert meter.verify() == []


def test_refunding_an_amount_makes_a_refund_grant(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    refunded = client.post(
        "/v1/accounts/acme/refunds",
        json={"amount": 250, "reason": "outage credit"},
        headers=priced.header("superadmin"),
    )

    assert refunded.status_code == 200, refunded.text
    txn = refunded.json()
    assert (txn["type"], txn["amount"], txn["balance_after"]) == ("refund", 250, 250)
    assert txn["description"] == "outage credit"
    [grant] = meter.grants("acme")
    assert (grant.source, grant.amount) == ("refund", 250)
    assert meter.balance("acme").available == 250
    assert meter.verify() == []


BAD_REFUNDS: list[tuple[str, Json, int]] = [
    ("superadmin", {}, 422),
    ("superadmin", {"reason": "why"}, 422),
    ("superadmin", {"usage_id": "use_1", "amount": 5}, 422),
    ("superadmin", {"amount": 2.5}, 422),
    ("superadmin", {"amount": -5}, 422),
    ("superadmin", {"amount": 5, "extra": True}, 422),
    ("superadmin", {"usage_id": "use_unknown"}, 404),
    ("admin", {"amount": 5}, 403),
    ("service", {"amount": 5}, 403),
    ("account", {"amount": 5}, 403),
]


def test_bad_refunds_change_nothing(client: TestClient, meter: CreditMeter, priced: Keys) -> None:
    for role, body, status in BAD_REFUNDS:
        response = client.post("/v1/accounts/acme/refunds", json=body, headers=priced.header(role))
        assert response.status_code == status, (role, body, response.text)
    assert meter.transactions("acme").data == ()
    assert meter.verify() == []


def test_a_usage_of_another_account_is_not_found_there(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    meter.grant("globex", 100)
    charge = meter.charge("globex", "chat", usage={"tokens": 10})
    response = client.post(
        "/v1/accounts/acme/refunds",
        json={"usage_id": charge.usage_id},
        headers=priced.header("superadmin"),
    )
    assert response.status_code == 404
    assert meter.balance("globex").available == 90
    assert meter.verify() == []


def test_a_forged_cursor_is_422_not_a_server_error(client: TestClient, priced: Keys) -> None:
    """Cursors are opaque, but a client can forge one: a time without a timezone, one out
    of range in UTC, or an id PostgreSQL cannot compare must be refused like any bad
    cursor. (Fails today: ``service.queries.decode_cursor`` lets them through to the SQL.)"""
    server = TestClient(client.app, raise_server_exceptions=False)
    forged = [
        "2026-03-10T12:00:00|txn_x",
        "0001-01-01T00:00:00+01:00|txn_x",
        "2026-03-10T12:00:00+00:00|txn_\x00",
    ]
    statuses = {}
    for raw in forged:
        cursor = base64.urlsafe_b64encode(raw.encode()).decode()
        for what in ("transactions", "usage"):
            response = server.get(
                f"/v1/accounts/acme/{what}",
                params={"cursor": cursor},
                headers=priced.header("service"),
            )
            statuses[raw, what] = response.status_code
    assert statuses == dict.fromkeys(statuses, 422)


# Voids.


def test_a_superadmin_voids_a_grant_once_and_the_audit_log_says_who(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    promo = meter.grant("acme", 700, source="promotional").grant_id
    meter.charge("acme", "chat", credits=200)
    path = f"/v1/accounts/acme/grants/{promo}/void"
    headers = {**priced.header("superadmin"), "Idempotency-Key": "void-1"}

    first = client.post(path, json={"reason": "sent by mistake"}, headers=headers)
    again = client.post(path, json={"reason": "sent by mistake"}, headers=headers)

    assert first.status_code == 200
    assert again.json() == first.json()
    txn = first.json()
    assert (txn["type"], txn["amount"], txn["balance_after"]) == ("void", -500, 0)
    assert {(p["ledger_account"], p["amount"]) for p in txn["postings"]} == {
        ("account:acme", -500),
        ("void", 500),
    }
    grants = client.get(
        "/v1/accounts/acme/grants?include_spent=true", headers=priced.header("admin")
    ).json()["data"]
    assert [g["voided_at"] for g in grants] == ["2026-03-10T12:00:00Z"]
    [entry] = client.get(
        "/v1/audit-log?action=grant.voided", headers=priced.header("admin")
    ).json()["data"]
    assert entry["subject"] == promo
    assert entry["details"]["amount"] == 500
    assert (entry["actor_kind"], entry["account"]) == ("api_key", "acme")
    assert entry["actor_key_id"] is not None
    assert meter.verify() == []


def test_voiding_held_credits_is_409_naming_the_holds(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    promo = meter.grant("acme", 700, source="promotional").grant_id
    hold = meter.authorize("acme", "chat", credits=300)
    path = f"/v1/accounts/acme/grants/{promo}/void"
    headers = priced.header("superadmin")

    refused = client.post(path, json={"reason": "r"}, headers=headers)

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["type"], error["grant"], error["holds"]) == ("grant_held", promo, [hold.id])
    assert meter.balance("acme").held == 300
    released = client.post(path, json={"reason": "r", "held": "release"}, headers=headers)
    assert released.status_code == 200
    assert released.json()["amount"] == -700
    assert meter.hold(hold.id).status == "released"
    assert meter.verify() == []


def test_only_a_superadmin_voids_and_bad_voids_change_nothing(
    client: TestClient, meter: CreditMeter, priced: Keys
) -> None:
    promo = meter.grant("acme", 700, source="promotional").grant_id
    theirs = meter.grant("globex", 100).grant_id
    path = f"/v1/accounts/acme/grants/{promo}/void"
    for role in ("admin", "service", "account"):
        refused = client.post(path, json={"reason": "r"}, headers=priced.header(role))
        assert refused.status_code == 403, role
    headers = priced.header("superadmin")
    for body in ({}, {"reason": ""}, {"reason": "r", "held": "keep"}, {"reason": "r", "x": 1}):
        assert client.post(path, json=body, headers=headers).status_code == 422, body
    foreign = client.post(
        f"/v1/accounts/acme/grants/{theirs}/void", json={"reason": "r"}, headers=headers
    )
    assert foreign.status_code == 404
    assert meter.balance("acme").available == 700
    assert meter.balance("globex").available == 100
    assert meter.verify() == []
