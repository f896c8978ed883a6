"""Every endpoint × every role × own or other account.

The policy below is the contract (DESIGN §9, docs/api.md). The list of endpoints comes from
the app's OpenAPI document, so an endpoint added without a policy here fails this test. An
allowed caller is never refused for who it is (no 401, no 403, no 404 for the account); a
refused caller gets 401, 403 or — for another account's key on an account's path — a 404
that does not reveal the account exists, and the refusal changes nothing in the database.

Whatever creates credits is the superadmin's (docs/api.md, "Who may create credits"):
grants, refunds, plans, prices, packages, settings, and an account's overdraft, which a
field of a request body sets; ``FIELDS`` holds those fields to the same rule wherever the
OpenAPI document shows them.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from creditmeter import CreditMeter
from creditmeter.payments.dev import DevProvider
from tests.api.conftest import ADMIN_KEY, Keys


class Who(Enum):
    PUBLIC = "no key needed"
    ANY_KEY = "any valid key"
    READER = "the account's own key, or service and above"
    SERVICE = "service and above"
    ADMIN = "admin and above"
    SUPERADMIN = "superadmin"


POLICY: dict[tuple[str, str], Who] = {
    ("GET", "/healthz"): Who.PUBLIC,
    ("GET", "/metrics"): Who.PUBLIC,
    ("GET", "/v1/features"): Who.ANY_KEY,
    ("GET", "/v1/plans"): Who.ANY_KEY,
    ("POST", "/v1/accounts"): Who.SERVICE,
    ("GET", "/v1/accounts/{account_id}"): Who.READER,
    ("GET", "/v1/accounts/{account_id}/balance"): Who.READER,
    ("POST", "/v1/accounts/{account_id}/portal-sessions"): Who.SERVICE,
    ("GET", "/v1/accounts/{account_id}/transactions"): Who.READER,
    ("GET", "/v1/accounts/{account_id}/usage"): Who.READER,
    ("GET", "/v1/accounts/{account_id}/usage/summary"): Who.READER,
    ("POST", "/v1/accounts/{account_id}/check"): Who.SERVICE,
    ("POST", "/v1/holds"): Who.SERVICE,
    ("GET", "/v1/holds/{hold_id}"): Who.SERVICE,
    ("GET", "/v1/accounts/{account_id}/holds"): Who.SERVICE,
    ("POST", "/v1/holds/{hold_id}/settle"): Who.SERVICE,
    ("POST", "/v1/holds/{hold_id}/release"): Who.SERVICE,
    ("POST", "/v1/usage"): Who.SERVICE,
    ("POST", "/v1/usage/batch"): Who.SERVICE,
    ("GET", "/v1/accounts"): Who.ADMIN,
    ("PATCH", "/v1/accounts/{account_id}"): Who.SERVICE,  # and FIELDS
    ("GET", "/v1/accounts/{account_id}/grants"): Who.ADMIN,
    ("PUT", "/v1/features/{key}"): Who.SUPERADMIN,
    ("PUT", "/v1/plans/{key}"): Who.SUPERADMIN,
    ("POST", "/v1/prices/sync"): Who.SUPERADMIN,
    ("GET", "/v1/prices"): Who.ADMIN,
    ("GET", "/v1/prices/versions"): Who.ADMIN,
    ("GET", "/v1/rerate"): Who.ADMIN,
    ("POST", "/v1/rerate/apply"): Who.SUPERADMIN,
    ("GET", "/v1/settings"): Who.ADMIN,
    ("GET", "/v1/settings/history"): Who.ADMIN,
    ("POST", "/v1/accounts/{account_id}/grants"): Who.SUPERADMIN,
    ("POST", "/v1/accounts/{account_id}/refunds"): Who.SUPERADMIN,
    ("POST", "/v1/accounts/{account_id}/grants/{grant_id}/void"): Who.SUPERADMIN,
    ("PUT", "/v1/settings"): Who.SUPERADMIN,
    ("GET", "/v1/api-keys"): Who.SUPERADMIN,
    ("POST", "/v1/api-keys"): Who.SUPERADMIN,
    ("DELETE", "/v1/api-keys/{key_id}"): Who.SUPERADMIN,
    ("GET", "/v1/webhook-endpoints"): Who.SUPERADMIN,
    ("POST", "/v1/webhook-endpoints"): Who.SUPERADMIN,
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): Who.SUPERADMIN,
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): Who.SUPERADMIN,
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): Who.SUPERADMIN,
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): Who.SUPERADMIN,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): Who.SUPERADMIN,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver"): (
        Who.SUPERADMIN
    ),
    ("POST", "/v1/webhooks/stripe"): Who.PUBLIC,  # the signature authenticates, not a key
    ("GET", "/v1/packages"): Who.ANY_KEY,
    ("PUT", "/v1/packages/{package_id}"): Who.SUPERADMIN,
    ("POST", "/v1/packages/boost"): Who.SUPERADMIN,
    ("POST", "/v1/accounts/{account_id}/checkout"): Who.READER,
    ("GET", "/v1/accounts/{account_id}/purchases"): Who.READER,
    ("GET", "/v1/accounts/{account_id}/purchases/{purchase_id}"): Who.READER,
    ("POST", "/v1/accounts/{account_id}/purchases/{purchase_id}/refund"): Who.SUPERADMIN,
    ("GET", "/v1/accounts/{account_id}/auto-recharge"): Who.READER,
    ("PUT", "/v1/accounts/{account_id}/auto-recharge"): Who.READER,
    ("GET", "/v1/admin/payment-events"): Who.ADMIN,
    ("GET", "/v1/admin/stats"): Who.ADMIN,
    ("GET", "/v1/admin/stats/models"): Who.ADMIN,
    ("GET", "/v1/admin/stats/features"): Who.ADMIN,
    ("GET", "/v1/admin/accounts"): Who.ADMIN,
    ("GET", "/v1/admin/usage/daily"): Who.ADMIN,
    ("GET", "/v1/accounts/{account_id}/usage/daily"): Who.READER,
    ("GET", "/v1/audit-log"): Who.ADMIN,
    ("GET", "/v1/accounts/{account_id}/notification-preferences"): Who.SERVICE,
    ("PUT", "/v1/accounts/{account_id}/notification-preferences"): Who.SERVICE,
}

FIELDS: dict[str, tuple[Who, object]] = {
    "plan": (Who.SERVICE, "max"),
    "status": (Who.ADMIN, "suspended"),
    "overdraft_limit": (Who.SUPERADMIN, 10**15),
}
"""Request-body fields that need more than their operation does, each with a value to set."""

BASES: dict[tuple[str, str], dict[str, object]] = {
    ("POST", "/v1/accounts"): {"name": "New"},
    ("PATCH", "/v1/accounts/{account_id}"): {},
}
"""The rest of a body that sets one of ``FIELDS``, for each operation that takes one."""

CALLERS = ("nobody", "account", "other", "service", "admin", "superadmin", "environment")
STAFF = {"service": 1, "admin": 2, "superadmin": 3, "environment": 3}
NEEDS = {Who.SERVICE: 1, Who.ADMIN: 2, Who.SUPERADMIN: 3}


def allowed(who: Who, caller: str) -> bool:
    if who is Who.PUBLIC:
        return True
    if caller == "nobody":
        return False
    if who is Who.ANY_KEY:
        return True
    if who is Who.READER and caller == "account":
        return True
    return STAFF.get(caller, 0) >= NEEDS.get(who, 1)


def headers(caller: str, keys: Keys) -> dict[str, str]:
    if caller == "nobody":
        return {}
    if caller == "environment":  # CREDITMETER_ADMIN_KEY
        return {"Authorization": f"Bearer {ADMIN_KEY}"}
    return keys.header(caller)


def endpoints(client: TestClient) -> list[tuple[str, str]]:
    """Every operation the app publishes in its OpenAPI document."""
    paths = client.get("/openapi.json").json()["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


def test_every_endpoint_has_a_policy(client: TestClient) -> None:
    assert set(endpoints(client)) == set(POLICY)


def snapshot(meter: CreditMeter) -> dict[str, Any]:
    """What a refused request must not change."""
    with meter.db.engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in (
                "accounts",
                "grants",
                "ledger_transactions",
                "usage_records",
                "idempotency_keys",
                "settings_versions",
                "features",
                "plans",
                "price_book_versions",
                "model_prices",
                "packages",
                "purchases",
                "auto_recharges",
                "payment_events",
                "outbox",
                "audit_log",
                "webhook_endpoints",
                "notification_preferences",
                "portal_sessions",
            )
        } | {
            "pending holds": conn.execute(
                sa.text("SELECT count(*) FROM holds WHERE status = 'pending'")
            ).scalar_one(),
            "active keys": conn.execute(
                sa.text("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
            ).scalar_one(),
            "acme": tuple(
                conn.execute(
                    sa.text(
                        "SELECT name, status, balance, held, plan_key, overdraft_limit"
                        " FROM accounts WHERE id = 'acme'"
                    )
                ).one()
            ),
            "purchase states": sorted(
                tuple(row)
                for row in conn.execute(
                    sa.text("SELECT id, status, amount_refunded FROM purchases")
                ).all()
            ),
        }


@pytest.fixture
def world(meter: CreditMeter, keys: Keys) -> dict[str, str]:
    """acme with credits, a usage and a pending hold; a key that may be revoked."""
    meter.put_feature("chat", rates={"tokens": 1})
    meter.put_plan("pro", allowances={"*": 1_000})
    meter.change_plan("acme", "pro")
    usage = meter.charge("acme", "chat", usage={"tokens": 5})
    hold = meter.authorize("acme", "chat", credits=10)
    spare, _ = meter.create_api_key("service", name="spare")
    endpoint, _ = meter.create_webhook_endpoint("https://example.com/hooks", enabled=False)
    meter.put_package("starter", credits=1_000, price=999, currency="usd")
    started = meter.checkout("acme", "starter", ui_mode="elements")
    assert isinstance(meter.payments, DevProvider)
    meter.payments.complete(meter.purchase(started.purchase_id))
    while meter.work():
        pass
    return {
        "account_id": "acme",
        "package_id": "starter",
        "purchase_id": started.purchase_id,
        "hold_id": hold.id,
        "grant_id": meter.grants("acme")[0].id,
        "key_id": spare.id,
        "endpoint_id": endpoint.id,
        "delivery_id": "whd_none",
        "key": "chat",
        "usage_id": usage.usage_id,
    }


def test_each_role_gets_exactly_what_the_contract_gives_it(
    client: TestClient, keys: Keys, meter: CreditMeter, world: dict[str, str]
) -> None:
    checked = 0
    for method, path in endpoints(client):
        who = POLICY[(method, path)]
        url = path.format(**world)
        for caller in CALLERS:
            before = snapshot(meter)
            body: dict[str, object] | None = None if method in ("GET", "DELETE") else {}
            response = client.request(method, url, headers=headers(caller, keys), json=body)
            status = response.status_code
            context = f"{method} {path} as {caller}: {status} {response.text[:200]}"
            if allowed(who, caller):
                assert status not in (401, 403), context
                assert status != 404 or "{account_id}" not in path, context
            else:
                expected = {401} if caller == "nobody" else {403}
                if caller == "other" and "{account_id}" in path:
                    expected = {403, 404}
                assert status in expected, context
                assert response.json()["error"]["type"] in {
                    "unauthenticated",
                    "forbidden",
                    "not_found",
                }, context
                assert snapshot(meter) == before, context
            checked += 1
    assert checked == len(POLICY) * len(CALLERS)


def fields_taken(client: TestClient) -> list[tuple[str, str, str]]:
    """``(method, path, field)`` for each of ``FIELDS`` in an operation's request body."""
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            schema = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            found += [
                (method.upper(), path, f) for f in schema.get("properties", {}) if f in FIELDS
            ]
    return sorted(found)


def test_fields_that_create_credits_need_the_role_that_creates_them(
    client: TestClient, keys: Keys, meter: CreditMeter, world: dict[str, str]
) -> None:
    meter.put_plan("max", allowances={"*": 10**12})
    taken = fields_taken(client)
    assert {(m, p) for m, p, _ in taken} == set(BASES)
    assert {f for _, _, f in taken} == set(FIELDS)
    for method, path, field in taken:
        who, value = FIELDS[field]
        for caller in CALLERS:
            body = {**BASES[(method, path)], field: value}
            if method == "POST":  # a new account each time
                body["id"] = f"new-{field}-{caller}".replace("_", "-")
            before = snapshot(meter)
            response = client.request(
                method, path.format(**world), headers=headers(caller, keys), json=body
            )
            context = f"{method} {path} with {field} as {caller}: {response.text[:200]}"
            if allowed(who, caller) and allowed(POLICY[(method, path)], caller):
                assert response.status_code == 200, context
                assert response.json()[field] == value, context
            else:
                assert response.status_code in {401, 403, 404}, context
                assert snapshot(meter) == before, context
