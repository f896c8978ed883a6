"""The audit log over HTTP: each change names the key that made it; filters, pages, CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.payments.dev import DevProvider
from tests.api.conftest import ADMIN_KEY, Keys
from tests.conftest import Clock

Json = dict[str, Any]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def entries(client: TestClient, keys: Keys, **params: Any) -> list[Json]:
    """The entries of changes made over HTTP (the fixtures' setup, made by the library,
    left out)."""
    response = client.get("/v1/audit-log", params=params, headers=keys.header("admin"))
    assert response.status_code == 200, response.text
    return [e for e in response.json()["data"] if e["actor_kind"] != "library"]


def who(entry: Json) -> tuple[str, str | None]:
    return entry["actor_kind"], entry["actor_key_id"]


def test_each_change_names_the_key_that_made_it(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    service, service_secret = meter.create_api_key("service", name="backend")
    admin, admin_secret = meter.create_api_key("admin", name="support")
    boss, boss_secret = meter.create_api_key("superadmin", name="ops")
    as_service, as_admin, as_boss = (bearer(s) for s in (service_secret, admin_secret, boss_secret))
    calls = [
        ("PUT", "/v1/features/chat", {"rates": {"tokens": 2}}, as_boss),
        ("PUT", "/v1/plans/pro", {"allowances": {"*": 1_000}}, as_boss),
        (
            "PUT",
            "/v1/packages/starter",
            {"credits": 500, "price": {"amount": 900, "currency": "usd"}},
            as_boss,
        ),
        ("POST", "/v1/accounts", {"id": "initech", "plan": "pro"}, as_service),
        (
            "PATCH",
            "/v1/accounts/acme",
            {"status": "suspended", "overdraft_limit": 50, "name": "Acme Inc"},
            as_boss,
        ),
        ("PATCH", "/v1/accounts/acme", {"plan": "pro"}, as_admin),
        ("POST", "/v1/accounts/acme/grants", {"amount": 300, "reason": "goodwill"}, as_boss),
        ("POST", "/v1/accounts/acme/refunds", {"amount": 40, "reason": "outage"}, as_boss),
        ("PUT", "/v1/settings", {"welcome_bonus": 25}, as_boss),
        ("POST", "/v1/api-keys", {"role": "account", "account": "acme"}, as_boss),
    ]
    answers = [client.request(m, url, json=body, headers=h) for m, url, body, h in calls]
    assert [a.status_code for a in answers] == [200] * 9 + [201], [a.text for a in answers]
    made = answers[-1].json()["id"]
    revoked = client.delete(f"/v1/api-keys/{made}", headers=as_boss)
    again = client.delete(f"/v1/api-keys/{made}", headers=as_boss)  # changes nothing
    assert (revoked.status_code, again.status_code) == (204, 204)

    log = list(reversed(entries(client, keys, limit=100)))

    grant, refund = answers[6].json(), answers[7].json()
    assert [(e["action"], who(e), e["account"], e["subject"]) for e in log] == [
        ("feature.put", ("api_key", boss.id), None, "chat"),
        ("plan.put", ("api_key", boss.id), None, "pro"),
        ("package.put", ("api_key", boss.id), None, "starter"),
        ("account.created", ("api_key", service.id), "initech", "initech"),
        ("account.status_changed", ("api_key", boss.id), "acme", "acme"),
        ("account.overdraft_changed", ("api_key", boss.id), "acme", "acme"),
        ("account.updated", ("api_key", boss.id), "acme", "acme"),
        ("account.plan_changed", ("api_key", admin.id), "acme", "acme"),
        ("grant.created", ("api_key", boss.id), "acme", grant["grant_id"]),
        ("refund.created", ("api_key", boss.id), "acme", refund["id"]),
        ("settings.changed", ("api_key", boss.id), None, "1"),
        ("api_key.created", ("api_key", boss.id), "acme", made),
        ("api_key.revoked", ("api_key", boss.id), "acme", made),
    ]
    details = {e["action"]: e["details"] for e in log}
    assert details["account.created"] == {"name": "initech", "plan": "pro", "overdraft_limit": 0}
    assert details["account.status_changed"] == {"from": "active", "to": "suspended"}
    assert details["account.overdraft_changed"] == {"from": 0, "to": 50}
    assert details["account.updated"] == {"name": {"from": "Acme", "to": "Acme Inc"}}
    assert details["account.plan_changed"] == {"from": None, "to": "pro", "effective": "now"}
    assert details["grant.created"] == {
        "amount": 300,
        "source": "admin",
        "pool": "*",
        "priority": 30,
        "effective_at": "2026-03-10T12:00:00+00:00",
        "expires_at": None,
        "reason": "goodwill",
        "transaction": grant["transaction_id"],
    }
    assert details["refund.created"] == {"amount": 40, "usage": None, "reason": "outage"}
    assert details["settings.changed"] == {"changes": {"welcome_bonus": 25}}
    assert details["feature.put"]["rule"]["rates"] == {"tokens": "2"}
    assert details["plan.put"]["allowances"] == {"*": 1_000}
    assert details["package.put"]["price"] == {"amount": 900, "currency": "usd"}
    assert details["api_key.created"] == {"role": "account", "name": "account key"}
    assert answers[-1].json()["key"] not in json.dumps(log)


def test_the_admin_key_from_the_environment_is_named_as_that_key(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    by_env = client.post("/v1/accounts/acme/grants", json={"amount": 5}, headers=bearer(ADMIN_KEY))
    by_key = client.post(
        "/v1/accounts/acme/grants", json={"amount": 7}, headers=keys.header("superadmin")
    )
    assert (by_env.status_code, by_key.status_code) == (200, 200)

    log = entries(client, keys)
    only_env = entries(client, keys, actor="admin_key_env")

    superadmin = meter.authenticate(keys.superadmin)
    assert superadmin is not None
    assert [(e["details"]["amount"], e["actor_kind"], e["actor_key_id"]) for e in log] == [
        (7, "api_key", superadmin.id),
        (5, "admin_key_env", None),
    ]
    assert [e["details"]["amount"] for e in only_env] == [5]


def test_a_refused_or_repeated_change_writes_no_entry(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    superadmin = keys.header("superadmin")
    refused = [
        client.post(
            "/v1/accounts/acme/grants",
            json={"amount": 5, "expires_at": "2020-01-01T00:00:00Z"},
            headers=superadmin,
        ),
        client.patch("/v1/accounts/acme", json={"plan": "no-such-plan"}, headers=superadmin),
        client.delete("/v1/api-keys/key_unknown", headers=superadmin),
        client.post("/v1/accounts/acme/grants", json={"amount": 5}, headers=keys.header("admin")),
    ]
    first = client.post(
        "/v1/accounts/acme/grants",
        json={"amount": 5},
        headers={**superadmin, "Idempotency-Key": "grant-1"},
    )
    retry = client.post(
        "/v1/accounts/acme/grants",
        json={"amount": 5},
        headers={**superadmin, "Idempotency-Key": "grant-1"},
    )
    unchanged = client.patch("/v1/accounts/acme", json={"status": "active"}, headers=superadmin)

    assert [r.status_code for r in refused] == [422, 404, 404, 403]
    assert (first.status_code, retry.status_code, unchanged.status_code) == (200, 200, 200)
    assert retry.json() == first.json()
    log = entries(client, keys)
    assert [(e["action"], e["subject"]) for e in log] == [
        ("grant.created", first.json()["grant_id"])
    ]


def test_a_purchase_refund_names_who_refunded_it(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    meter.put_package("starter", credits=1_000, price=999, currency="usd")
    started = meter.checkout("acme", "starter", ui_mode="elements")
    assert isinstance(meter.payments, DevProvider)
    meter.payments.complete(meter.purchase(started.purchase_id))
    while meter.work():
        pass

    refunded = client.post(
        f"/v1/accounts/acme/purchases/{started.purchase_id}/refund",
        json={"amount": 300, "reason": "asked"},
        headers=bearer(ADMIN_KEY),
    )

    assert refunded.status_code == 200, refunded.text
    [entry] = entries(client, keys, action="purchase.refunded")
    assert who(entry) == ("admin_key_env", None)
    assert (entry["account"], entry["subject"]) == ("acme", started.purchase_id)
    assert entry["details"] == {"amount": 300, "currency": "usd", "reason": "asked"}


def test_the_log_filters_by_actor_account_action_and_time_in_pages(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    boss, boss_secret = meter.create_api_key("superadmin", name="ops")
    grants = []
    for account, amount in [("acme", 1), ("globex", 2), ("acme", 3), ("acme", 4)]:
        answer = client.post(
            f"/v1/accounts/{account}/grants", json={"amount": amount}, headers=bearer(boss_secret)
        )
        grants.append(answer.json()["grant_id"])
        clock.advance(hours=1)
    client.patch("/v1/accounts/acme", json={"status": "blocked"}, headers=bearer(boss_secret))

    def amounts(**params: Any) -> list[int | None]:
        return [e["details"].get("amount") for e in entries(client, keys, **params)]

    assert amounts() == [None, 4, 3, 2, 1]
    assert amounts(actor=boss.id) == [None, 4, 3, 2, 1]
    assert amounts(actor="api_key") == [None, 4, 3, 2, 1]
    assert amounts(actor="admin_key_env") == []
    assert amounts(actor="key_unknown") == []
    assert amounts(account="globex") == [2]
    assert amounts(action="grant.created", account="acme") == [4, 3, 1]
    assert amounts(action=["account.status_changed", "grant.created"], account="acme") == [
        None,
        4,
        3,
        1,
    ]
    assert amounts(**{"from": "2026-03-10T13:00:00Z", "to": "2026-03-10T15:00:00+00:00"}) == [3, 2]

    mine: dict[str, str | int] = {"actor": boss.id, "limit": 3}
    first = client.get("/v1/audit-log", params=mine, headers=keys.header("superadmin"))
    cursor = first.json()["next_cursor"]
    second = client.get(
        "/v1/audit-log", params={**mine, "cursor": cursor}, headers=keys.header("superadmin")
    )
    assert [e["subject"] for e in first.json()["data"]] == ["acme", grants[3], grants[2]]
    assert [e["subject"] for e in second.json()["data"]] == [grants[1], grants[0]]
    assert second.json()["next_cursor"] is None


def test_bad_filters_are_refused(client: TestClient, keys: Keys) -> None:
    bad: list[dict[str, str | int]] = [
        {"action": "grant.stolen"},
        {"cursor": "not-a-cursor"},
        {"from": "2026-03-10T12:00:00"},
        {"limit": 0},
    ]
    for params in bad:
        response = client.get("/v1/audit-log", params=params, headers=keys.header("admin"))
        assert response.status_code == 422, params
        assert "error" in response.json()


def test_only_staff_of_admin_rank_read_the_log(client: TestClient, keys: Keys) -> None:
    statuses = {
        role: client.get("/v1/audit-log", headers=keys.header(role)).status_code
        for role in ("account", "service", "admin", "superadmin")
    }
    assert statuses == {"account": 403, "service": 403, "admin": 200, "superadmin": 200}
    assert client.get("/v1/audit-log").status_code == 401


def test_the_log_exports_as_csv(
    client: TestClient, meter: CreditMeter, keys: Keys, clock: Clock
) -> None:
    client.post("/v1/accounts/acme/grants", json={"amount": 5}, headers=bearer(ADMIN_KEY))
    clock.advance(minutes=1)
    client.patch("/v1/accounts/globex", json={"overdraft_limit": 10}, headers=bearer(ADMIN_KEY))

    response = client.get(
        "/v1/audit-log",
        params={"format": "csv", "account": "acme", "actor": "admin_key_env"},
        headers=keys.header("admin"),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["action"], r["actor_kind"], r["actor_key_id"], r["account"]) for r in rows] == [
        ("grant.created", "admin_key_env", "", "acme")
    ]
    assert json.loads(rows[0]["details"])["amount"] == 5
    assert rows[0]["created_at"] == "2026-03-10T12:00:00+00:00"
