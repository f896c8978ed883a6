"""Credit packs, checkout, purchases, refunds, auto-recharge and payment events over HTTP,
with the development payment provider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from creditmeter.api.schemas.payments import Currency, UiModeName
from creditmeter.core.payments import (
    CURRENCIES,
    PaymentDeclined,
    PaymentError,
    Purchase,
    PurchaseStatus,
    UiMode,
)
from creditmeter.payments.dev import DECLINING_CARD, WORKING_CARD, DevProvider
from creditmeter.payments.provider import CheckoutRequest, ProviderCheckout
from tests.api.conftest import ADMIN_KEY, Keys

Json = dict[str, Any]
STARTER: Json = {
    "name": "Starter",
    "credits": 10_000,
    "bonus_credits": 1_000,
    "price": {"amount": 999, "currency": "usd"},
    "popular": True,
    "best_value": False,
    "active": True,
    "sort_order": 1,
    "stripe_price_id": None,
}
HOSTED: Json = {"package": "starter", "success_url": "https://example.com/done"}


def dev(meter: CreditMeter) -> DevProvider:
    assert isinstance(meter.payments, DevProvider)
    return meter.payments


def drain(meter: CreditMeter) -> int:
    """Run the due jobs until none is left; how many ran."""
    ran = 0
    for _ in range(100):
        done = meter.work()
        if done == 0:
            return ran
        ran += done
    raise AssertionError("the jobs never ran out")


def starter(meter: CreditMeter) -> None:
    meter.put_package(
        "starter", name="Starter", credits=10_000, bonus_credits=1_000, price=999, currency="usd"
    )


def bought(meter: CreditMeter, account: str = "acme") -> Purchase:
    """A fulfilled purchase of ``starter``: checkout, paid at the provider, applied."""
    started = meter.checkout(account, "starter", success_url="https://example.com/done")
    dev(meter).complete(meter.purchase(started.purchase_id))
    drain(meter)
    purchase = meter.purchase(started.purchase_id)
    assert purchase.status is PurchaseStatus.FULFILLED
    return purchase


def ok(response: Any, status: int = 200) -> Json:
    assert response.status_code == status, response.text
    body: Json = response.json()
    return body


def refused(response: Any, status: int, kind: str) -> Json:
    assert response.status_code == status, response.text
    error: Json = response.json()["error"]
    assert error["type"] == kind, error
    return error


# Credit packs.


def test_a_package_is_put_and_listed_with_its_price_in_minor_units(
    client: TestClient, keys: Keys
) -> None:
    put = ok(client.put("/v1/packages/starter", json=STARTER, headers=keys.header("superadmin")))
    hidden = {**STARTER, "name": "Old", "active": False, "sort_order": 0}
    ok(client.put("/v1/packages/old", json=hidden, headers=keys.header("superadmin")))

    listed = ok(client.get("/v1/packages", headers=keys.header("account")))
    everything = client.get("/v1/packages?include_inactive=true", headers=keys.header("admin"))

    assert put == {"id": "starter", "total_credits": 11_000, **STARTER}
    assert listed == {"data": [put], "next_cursor": None}
    assert [p["id"] for p in ok(everything)["data"]] == ["old", "starter"]
    refused(
        client.get("/v1/packages?include_inactive=true", headers=keys.header("service")),
        403,
        "forbidden",
    )


def test_a_package_put_again_is_replaced_and_its_name_defaults_to_its_id(
    client: TestClient, keys: Keys
) -> None:
    ok(client.put("/v1/packages/starter", json=STARTER, headers=keys.header("superadmin")))
    body = {"credits": 500, "price": {"amount": 1_000, "currency": "jpy"}}

    replaced = ok(client.put("/v1/packages/starter", json=body, headers=keys.header("superadmin")))

    assert replaced["name"] == "starter"
    assert (replaced["credits"], replaced["bonus_credits"]) == (500, 0)
    assert replaced["price"] == {"amount": 1_000, "currency": "jpy"}
    assert (replaced["popular"], replaced["active"]) == (False, True)
    listed = ok(client.get("/v1/packages", headers=keys.header("account")))["data"]
    assert listed == [replaced]


@pytest.mark.parametrize(
    "change",
    [
        {"price": {"amount": 999, "currency": "xyz"}},
        {"price": {"amount": 999, "currency": "USD"}},
        {"price": {"amount": 999}},
        {"price": {"amount": 9.99, "currency": "usd"}},
        {"price": {"amount": "999", "currency": "usd"}},
        {"price": {"amount": 0, "currency": "usd"}},
        {"price": {"amount": 10**13, "currency": "usd"}},
        {"price": 999},
        {"credits": -1},
        {"credits": 0},
        {"credits": 10.5},
        {"credits": "10000"},
        {"bonus_credits": -1},
        {"bonus_credits": 1.5},
        {"credits": 10**15, "bonus_credits": 1},
        {"stripe_price_id": "price 1"},
        {"sort_order": 2**31},
        {"popular": "yes"},
        {"name": ""},
        {"colour": "gold"},
    ],
)
def test_bad_packages_are_422_and_change_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, change: Json
) -> None:
    response = client.put(
        "/v1/packages/starter", json={**STARTER, **change}, headers=keys.header("superadmin")
    )

    refused(response, 422, "invalid_request")
    assert meter.packages(include_inactive=True) == []


def test_a_bad_package_id_is_422(client: TestClient, keys: Keys) -> None:
    response = client.put("/v1/packages/a%20b", json=STARTER, headers=keys.header("superadmin"))

    refused(response, 422, "invalid_request")


def test_a_whole_number_written_with_a_point_is_the_integer(client: TestClient, keys: Keys) -> None:
    body = {**STARTER, "credits": 10_000.0, "price": {"amount": 999.0, "currency": "usd"}}

    put = ok(client.put("/v1/packages/starter", json=body, headers=keys.header("superadmin")))

    assert (put["credits"], put["price"]["amount"]) == (10_000, 999)


def test_boost_packs_are_derived_from_a_base_or_the_smallest_plan(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    price = {"amount": 1_900, "currency": "usd"}
    no_plan = client.post(
        "/v1/packages/boost", json={"price": price}, headers=keys.header("superadmin")
    )
    meter.put_plan("pro", allowances={"*": 50_000})
    meter.put_plan("basic", allowances={"*": 20_000})

    derived = ok(
        client.post("/v1/packages/boost", json={"price": price}, headers=keys.header("superadmin"))
    )
    given = ok(
        client.post(
            "/v1/packages/boost",
            json={"price": price, "base_credits": 1_000},
            headers=keys.header("superadmin"),
        )
    )

    refused(no_plan, 422, "invalid_request")
    shapes = [
        (
            p["id"],
            p["credits"],
            p["bonus_credits"],
            p["price"]["amount"],
            p["popular"],
            p["best_value"],
        )
        for p in derived["data"]
    ]
    assert shapes == [
        ("boost-half", 10_000, 0, 950, False, False),
        ("boost-single", 20_000, 2_000, 1_900, True, False),
        ("boost-double", 40_000, 6_000, 3_800, False, True),
    ]
    assert [p["credits"] for p in given["data"]] == [500, 1_000, 2_000]
    listed = ok(client.get("/v1/packages", headers=keys.header("account")))["data"]
    assert listed == given["data"]


@pytest.mark.parametrize(
    "body",
    [
        {"price": {"amount": 1_900, "currency": "usd"}, "base_credits": 1},
        {"price": {"amount": 1_900, "currency": "usd"}, "base_credits": 2.5},
        {"price": {"amount": 19.0001, "currency": "usd"}, "base_credits": 1_000},
        {"price": {"amount": 1, "currency": "usd"}, "base_credits": 1_000},
        {"base_credits": 1_000},
    ],
)
def test_bad_boosts_are_422_and_write_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, body: Json
) -> None:
    refused(
        client.post("/v1/packages/boost", json=body, headers=keys.header("superadmin")),
        422,
        "invalid_request",
    )
    assert meter.packages(include_inactive=True) == []


def test_the_currencies_and_ui_modes_of_the_schema_are_those_of_the_core() -> None:
    assert set(get_args(Currency)) == CURRENCIES
    assert set(get_args(UiModeName)) == {m.value for m in UiMode}


# Checkout.


@pytest.mark.parametrize("ui_mode", ["hosted", "embedded", "elements"])
def test_a_checkout_starts_a_pending_purchase_for_each_ui_mode(
    client: TestClient, meter: CreditMeter, keys: Keys, ui_mode: str
) -> None:
    starter(meter)
    body = {"package": "starter", "ui_mode": ui_mode, "save_payment_method": True}
    if ui_mode != "elements":
        body["success_url"] = "https://example.com/done?session={CHECKOUT_SESSION_ID}"
        body["cancel_url"] = "https://example.com/billing"

    started = ok(
        client.post("/v1/accounts/acme/checkout", json=body, headers=keys.header("account"))
    )

    purchase_id = started["purchase_id"]
    token = dev(meter).page_token(purchase_id)
    assert started["ui_mode"] == ui_mode
    if ui_mode == "hosted":
        assert started["session_id"] == f"cs_dev_{purchase_id}"
        assert started["url"] == f"http://127.0.0.1:8000/dev/checkout/{purchase_id}?token={token}"
        assert started["client_secret"] is None
    elif ui_mode == "embedded":
        assert started["session_id"] == f"cs_dev_{purchase_id}"
        assert started["url"] is None
        assert started["client_secret"] == f"cs_dev_{purchase_id}_secret_{token}"
    else:
        assert started["session_id"] == f"pi_dev_{purchase_id}"
        assert started["url"] is None
        assert started["client_secret"] == f"pi_dev_{purchase_id}_secret_{token}"
    purchase = ok(
        client.get(f"/v1/accounts/acme/purchases/{purchase_id}", headers=keys.header("account"))
    )
    assert purchase["status"] == "pending"
    assert purchase["kind"] == "checkout"
    assert (purchase["credits"], purchase["bonus_credits"]) == (11_000, 1_000)
    assert purchase["price"] == {"amount": 999, "currency": "usd"}
    assert (purchase["amount_paid"], purchase["transaction_id"]) == (0, None)
    assert meter.balance("acme").available == 0


def test_a_checkout_retried_with_its_idempotency_key_is_the_same_purchase(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    headers = {**keys.header("service"), "Idempotency-Key": "buy-1"}

    first = ok(client.post("/v1/accounts/acme/checkout", json=HOSTED, headers=headers))
    again = ok(client.post("/v1/accounts/acme/checkout", json=HOSTED, headers=headers))
    other = client.post(
        "/v1/accounts/acme/checkout", json={**HOSTED, "ui_mode": "embedded"}, headers=headers
    )

    assert again == first
    refused(other, 409, "idempotency_conflict")
    purchases = ok(client.get("/v1/accounts/acme/purchases", headers=keys.header("service")))
    assert [p["id"] for p in purchases["data"]] == [first["purchase_id"]]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"package": "starter"}, 422, "invalid_request"),
        ({"package": "starter", "ui_mode": "embedded"}, 422, "invalid_request"),
        ({**HOSTED, "ui_mode": "redirect"}, 422, "invalid_request"),
        ({**HOSTED, "success_url": "javascript:alert(1)"}, 422, "invalid_request"),
        ({**HOSTED, "cancel_url": "not a url"}, 422, "invalid_request"),
        ({**HOSTED, "save_payment_method": "yes"}, 422, "invalid_request"),
        ({**HOSTED, "package": "gold"}, 404, "not_found"),
        ({**HOSTED, "package": "old"}, 422, "invalid_request"),
        ({**HOSTED, "quantity": 2}, 422, "invalid_request"),
    ],
)
def test_bad_checkouts_are_refused_and_start_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, body: Json, status: int, kind: str
) -> None:
    starter(meter)
    meter.put_package("old", credits=1, price=100, currency="usd", active=False)

    refused(
        client.post("/v1/accounts/acme/checkout", json=body, headers=keys.header("account")),
        status,
        kind,
    )
    assert meter.purchases("acme").data == ()


def test_a_suspended_account_cannot_check_out_and_another_account_is_not_found(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    meter.update_account("globex", status="suspended")

    other = client.post("/v1/accounts/globex/checkout", json=HOSTED, headers=keys.header("account"))
    suspended = client.post(
        "/v1/accounts/globex/checkout", json=HOSTED, headers=keys.header("service")
    )
    nobody = client.post(
        "/v1/accounts/nobody/checkout", json=HOSTED, headers=keys.header("service")
    )

    refused(other, 404, "not_found")
    refused(suspended, 403, "account_suspended")
    refused(nobody, 404, "not_found")


class FailingProvider(DevProvider):
    """A provider that refuses every checkout, as Stripe down or a declined card would."""

    def __init__(self, error: PaymentError) -> None:
        super().__init__()
        self.error = error

    def create_checkout(self, request: CheckoutRequest) -> ProviderCheckout:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (
            PaymentError("Stripe could not start the checkout: timeout"),
            502,
            "payment_provider_error",
        ),
        (PaymentDeclined("Your card was declined."), 402, "payment_declined"),
    ],
)
def test_a_provider_that_fails_is_a_clear_error_and_the_purchase_fails(
    migrated_url: str, keys: Keys, meter: CreditMeter, error: PaymentError, status: int, kind: str
) -> None:
    starter(meter)
    with CreditMeter(migrated_url, payments=FailingProvider(error)) as failing:
        app = create_app(
            ServerSettings(admin_key=SecretStr(ADMIN_KEY), worker=False), meter=failing
        )
        with TestClient(app) as client:
            response = client.post(
                "/v1/accounts/acme/checkout", json=HOSTED, headers=keys.header("service")
            )

    found = refused(response, status, kind)
    assert found["message"] == error.message
    (purchase,) = meter.purchases("acme").data
    assert purchase.status is PurchaseStatus.FAILED


# Purchases.


def test_purchases_are_listed_newest_first_a_page_at_a_time(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    ids = [meter.checkout("acme", "starter", ui_mode="elements").purchase_id for _ in range(3)]
    meter.checkout("globex", "starter", ui_mode="elements")

    first = ok(client.get("/v1/accounts/acme/purchases?limit=2", headers=keys.header("account")))
    second = ok(
        client.get(
            "/v1/accounts/acme/purchases",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=keys.header("account"),
        )
    )

    assert [p["id"] for p in first["data"] + second["data"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert {p["account"] for p in first["data"] + second["data"]} == {"acme"}


def test_a_purchase_is_read_only_through_its_own_account(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    theirs = meter.checkout("globex", "starter", ui_mode="elements").purchase_id

    through_acme = client.get(f"/v1/accounts/acme/purchases/{theirs}", headers=keys.header("admin"))
    as_acme = client.get(f"/v1/accounts/globex/purchases/{theirs}", headers=keys.header("account"))
    unknown = client.get("/v1/accounts/acme/purchases/pur_nope", headers=keys.header("admin"))
    malformed = client.get("/v1/accounts/acme/purchases/a%20b", headers=keys.header("admin"))

    refused(through_acme, 404, "not_found")
    refused(as_acme, 404, "not_found")
    refused(unknown, 404, "not_found")
    refused(malformed, 422, "invalid_request")
    assert (
        ok(client.get(f"/v1/accounts/globex/purchases/{theirs}", headers=keys.header("other")))[
            "id"
        ]
        == theirs
    )


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=1.5", "cursor=a%20b"])
def test_bad_purchase_list_queries_are_422(client: TestClient, keys: Keys, query: str) -> None:
    refused(
        client.get(f"/v1/accounts/acme/purchases?{query}", headers=keys.header("service")),
        422,
        "invalid_request",
    )


# Refunds.


def test_a_refund_claws_back_its_share_of_the_credits_and_the_rest_later(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    purchase = bought(meter)
    path = f"/v1/accounts/acme/purchases/{purchase.id}/refund"

    part = ok(
        client.post(
            path, json={"amount": 500, "reason": "unhappy"}, headers=keys.header("superadmin")
        )
    )
    after_part = meter.balance("acme").available
    drain(meter)  # the provider's charge.refunded event: applied already, so ignored
    rest = ok(client.post(path, json={}, headers=keys.header("superadmin")))
    drain(meter)
    again = client.post(path, json={}, headers=keys.header("superadmin"))

    assert (part["status"], part["amount_refunded"], part["credits_clawed_back"]) == (
        "fulfilled",
        500,
        11_000 * 500 // 999,
    )
    assert after_part == 11_000 - 11_000 * 500 // 999
    assert (rest["status"], rest["amount_refunded"], rest["credits_clawed_back"]) == (
        "refunded",
        999,
        11_000,
    )
    assert meter.balance("acme").available == 0
    refused(again, 422, "invalid_request")
    events = ok(client.get("/v1/admin/payment-events?status=ignored", headers=keys.header("admin")))
    assert [e["type"] for e in events["data"]] == ["charge.refunded", "charge.refunded"]
    assert meter.verify() == []


def test_a_refund_retried_with_its_key_refunds_once(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    purchase = bought(meter)
    path = f"/v1/accounts/acme/purchases/{purchase.id}/refund"
    headers = {**keys.header("superadmin"), "Idempotency-Key": "refund-1"}

    first = ok(client.post(path, json={"amount": 300}, headers=headers))
    again = ok(client.post(path, json={"amount": 300}, headers=headers))
    drain(meter)
    other = client.post(path, json={"amount": 200}, headers=headers)

    assert again == first
    assert meter.purchase(purchase.id).amount_refunded == 300
    refused(other, 409, "idempotency_conflict")
    assert meter.verify() == []


@pytest.mark.parametrize(
    ("shortfall", "debt", "unrecovered", "available"),
    [("adjustment", 8_000, 0, -8_000), ("debt", 0, 10_000, 2_000)],
)
def test_spent_credits_a_refund_claws_back_are_taken_or_recorded_per_setting(
    client: TestClient,
    meter: CreditMeter,
    keys: Keys,
    shortfall: str,
    debt: int,
    unrecovered: int,
    available: int,
) -> None:
    starter(meter)
    meter.put_feature("chat", rates={"tokens": 1})
    purchase = bought(meter)
    meter.charge("acme", "chat", usage={"tokens": 10_000})
    meter.grant("acme", 2_000)
    ok(
        client.put(
            "/v1/settings", json={"refund_shortfall": shortfall}, headers=keys.header("superadmin")
        )
    )

    refunded = ok(
        client.post(
            f"/v1/accounts/acme/purchases/{purchase.id}/refund",
            json={},
            headers=keys.header("superadmin"),
        )
    )

    assert refunded["status"] == "refunded"
    assert refunded["credits_clawed_back"] == 11_000
    assert (refunded["clawback_debt"], refunded["credits_unrecovered"]) == (debt, unrecovered)
    balance = ok(client.get("/v1/accounts/acme/balance", headers=keys.header("account")))
    assert balance["available"] == available
    assert meter.verify() == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"amount": 1_000}, 422),
        ({"amount": 0}, 422),
        ({"amount": 4.5}, 422),
        ({"amount": "5"}, 422),
        ({"why": "x"}, 422),
    ],
)
def test_bad_refunds_are_refused_and_take_nothing_back(
    client: TestClient, meter: CreditMeter, keys: Keys, body: Json, status: int
) -> None:
    starter(meter)
    purchase = bought(meter)

    response = client.post(
        f"/v1/accounts/acme/purchases/{purchase.id}/refund",
        json=body,
        headers=keys.header("superadmin"),
    )

    refused(response, status, "invalid_request")
    assert meter.purchase(purchase.id).amount_refunded == 0
    assert meter.balance("acme").available == 11_000


def test_a_pending_or_anothers_purchase_is_not_refunded(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    pending = meter.checkout("acme", "starter", ui_mode="elements").purchase_id
    theirs = bought(meter, "globex").id

    not_paid = client.post(
        f"/v1/accounts/acme/purchases/{pending}/refund", json={}, headers=keys.header("superadmin")
    )
    elsewhere = client.post(
        f"/v1/accounts/acme/purchases/{theirs}/refund", json={}, headers=keys.header("superadmin")
    )

    refused(not_paid, 422, "invalid_request")
    refused(elsewhere, 404, "not_found")
    assert meter.purchase(theirs).amount_refunded == 0


# Auto-recharge.


def test_auto_recharge_is_off_until_set(client: TestClient, keys: Keys) -> None:
    found = ok(client.get("/v1/accounts/acme/auto-recharge", headers=keys.header("account")))

    assert found == {
        "account": "acme",
        "enabled": False,
        "threshold": 0,
        "package": None,
        "payment_method": None,
        "monthly_cap": None,
        "consecutive_failures": 0,
        "disabled_reason": None,
        "pending_purchase_id": None,
        "retry_at": None,
    }


def test_auto_recharge_buys_the_package_when_the_balance_falls_below_the_threshold(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    meter.put_feature("chat", rates={"tokens": 1})
    meter.grant("acme", 3_000)
    body = {
        "enabled": True,
        "threshold": 1_000,
        "package": "starter",
        "payment_method": WORKING_CARD,
        "monthly_cap": 5_000,
    }

    put = ok(
        client.put("/v1/accounts/acme/auto-recharge", json=body, headers=keys.header("account"))
    )
    meter.charge("acme", "chat", usage={"tokens": 2_500})
    started = ok(client.get("/v1/accounts/acme/auto-recharge", headers=keys.header("account")))
    drain(meter)
    done = ok(client.get("/v1/accounts/acme/auto-recharge", headers=keys.header("service")))

    assert {k: put[k] for k in body} == {**body, "package": "starter"}
    assert put["pending_purchase_id"] is None
    assert started["pending_purchase_id"] is not None
    assert done["pending_purchase_id"] is None
    assert done["consecutive_failures"] == 0
    assert meter.balance("acme").available == 500 + 11_000
    (purchase,) = ok(client.get("/v1/accounts/acme/purchases", headers=keys.header("account")))[
        "data"
    ]
    assert (purchase["kind"], purchase["status"]) == ("auto_recharge", "fulfilled")
    assert purchase["id"] == started["pending_purchase_id"]


def test_auto_recharge_turns_itself_off_after_failures_and_says_why(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    ok(
        client.put(
            "/v1/settings",
            json={"auto_recharge_max_failures": 1},
            headers=keys.header("superadmin"),
        )
    )
    body = {
        "enabled": True,
        "threshold": 1_000,
        "package": "starter",
        "payment_method": DECLINING_CARD,
    }

    put = ok(
        client.put("/v1/accounts/acme/auto-recharge", json=body, headers=keys.header("service"))
    )
    drain(meter)
    found = ok(client.get("/v1/accounts/acme/auto-recharge", headers=keys.header("account")))

    assert put["pending_purchase_id"] is not None  # below the threshold already: started at once
    assert found["enabled"] is False
    assert found["consecutive_failures"] == 1
    assert "declined" in found["disabled_reason"]
    assert found["retry_at"] is not None
    assert meter.balance("acme").available == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"enabled": True, "threshold": 1_000}, 422),
        ({"enabled": True, "threshold": 1_000, "package": "starter"}, 422),
        ({"enabled": True, "threshold": 1_000, "package": "gold", "payment_method": "pm_1"}, 404),
        (
            {"enabled": True, "threshold": 1_000, "package": "starter", "payment_method": "pm 1"},
            422,
        ),
        ({"enabled": True, "threshold": -1, "package": "starter", "payment_method": "pm_1"}, 422),
        ({"enabled": True, "threshold": 1.5, "package": "starter", "payment_method": "pm_1"}, 422),
        (
            {
                "enabled": True,
                "threshold": 10,
                "package": "starter",
                "payment_method": "pm_1",
                "monthly_cap": 0,
            },
            422,
        ),
        (
            {
                "enabled": True,
                "threshold": 10,
                "package": "starter",
                "payment_method": "pm_1",
                "monthly_cap": 500,
            },
            422,
        ),
        (
            {
                "enabled": True,
                "threshold": 10,
                "package": "starter",
                "payment_method": "pm_1",
                "monthly_cap": 9.99,
            },
            422,
        ),
        ({"enabled": "true", "threshold": 10}, 422),
        ({"threshold": 10}, 422),
        ({"enabled": False, "colour": "red"}, 422),
    ],
)
def test_bad_auto_recharges_are_refused_and_change_nothing(
    client: TestClient, meter: CreditMeter, keys: Keys, body: Json, status: int
) -> None:
    starter(meter)

    response = client.put(
        "/v1/accounts/acme/auto-recharge", json=body, headers=keys.header("account")
    )

    assert response.status_code == status, response.text
    assert meter.auto_recharge("acme").enabled is False
    assert meter.purchases("acme").data == ()


def test_auto_recharge_is_turned_off_with_enabled_false(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    meter.grant("acme", 5_000)
    on = {"enabled": True, "threshold": 1_000, "package": "starter", "payment_method": WORKING_CARD}
    ok(client.put("/v1/accounts/acme/auto-recharge", json=on, headers=keys.header("account")))

    off = ok(
        client.put(
            "/v1/accounts/acme/auto-recharge",
            json={"enabled": False},
            headers=keys.header("account"),
        )
    )

    assert (off["enabled"], off["threshold"], off["package"]) == (False, 0, None)


# Payment events and settings.


def test_admins_see_the_payment_events_and_what_handling_them_did(
    client: TestClient, meter: CreditMeter, keys: Keys
) -> None:
    starter(meter)
    purchase = bought(meter)

    events = ok(client.get("/v1/admin/payment-events", headers=keys.header("admin")))
    applied = ok(
        client.get("/v1/admin/payment-events?status=applied", headers=keys.header("admin"))
    )
    flagged = ok(
        client.get("/v1/admin/payment-events?status=flagged", headers=keys.header("admin"))
    )
    bad = client.get("/v1/admin/payment-events?status=lost", headers=keys.header("admin"))

    (event,) = events["data"]
    assert event["type"] == "checkout.session.completed"
    assert (event["status"], event["provider"], event["purchase_id"]) == (
        "applied",
        "dev",
        purchase.id,
    )
    assert event["note"] == "11000 credits credited"
    assert event["handled_at"] is not None
    assert applied["data"] == events["data"]
    assert flagged == {"data": [], "next_cursor": None}
    refused(bad, 422, "invalid_request")


def test_the_payment_settings_are_shown_and_changed(client: TestClient, keys: Keys) -> None:
    before = ok(client.get("/v1/settings", headers=keys.header("admin")))
    changed = ok(
        client.put(
            "/v1/settings",
            json={
                "refund_shortfall": "debt",
                "auto_recharge_max_failures": 5,
                "auto_recharge_retry_seconds": 60,
            },
            headers=keys.header("superadmin"),
        )
    )

    assert (
        before["refund_shortfall"],
        before["auto_recharge_max_failures"],
        before["auto_recharge_retry_seconds"],
    ) == (
        "adjustment",
        3,
        3_600,
    )
    assert (
        changed["refund_shortfall"],
        changed["auto_recharge_max_failures"],
        changed["auto_recharge_retry_seconds"],
    ) == (
        "debt",
        5,
        60,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"refund_shortfall": "forgive"},
        {"refund_shortfall": None},
        {"auto_recharge_max_failures": 0},
        {"auto_recharge_max_failures": 2.5},
        {"auto_recharge_retry_seconds": -1},
        {"auto_recharge_retry_seconds": "60"},
    ],
)
def test_bad_payment_settings_are_422(client: TestClient, keys: Keys, body: Json) -> None:
    refused(
        client.put("/v1/settings", json=body, headers=keys.header("superadmin")),
        422,
        "invalid_request",
    )


@pytest.fixture
def unsold(migrated_url: str, meter: CreditMeter) -> Iterator[TestClient]:
    """The app as ``serve`` makes it with no payment provider configured, over the
    ``meter`` fixture's database; a purchase bought through ``meter`` (the development
    provider) lies in it."""
    starter(meter)
    meter.create_account("acme", name="Acme")
    bought(meter)
    settings = ServerSettings(
        database_url=migrated_url, admin_key=SecretStr(ADMIN_KEY), worker=False, rate_limits=False
    )
    assert settings.payments == "off"
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_server_without_a_provider_sells_nothing_and_writes_nothing(
    unsold: TestClient, meter: CreditMeter
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    before = meter.purchases("acme").data
    (purchase,) = before

    started = unsold.post("/v1/accounts/acme/checkout", json=HOSTED, headers=admin)
    elements = unsold.post(
        "/v1/accounts/acme/checkout",
        json={"package": "starter", "ui_mode": "elements"},
        headers=admin,
    )
    refund = unsold.post(
        f"/v1/accounts/acme/purchases/{purchase.id}/refund", json={}, headers=admin
    )
    recharge = unsold.put(
        "/v1/accounts/acme/auto-recharge",
        json={
            "enabled": True,
            "threshold": 100,
            "package": "starter",
            "payment_method": WORKING_CARD,
        },
        headers=admin,
    )
    webhook = unsold.post(
        "/v1/webhooks/stripe", content=b'{"id": "evt_1"}', headers={"Stripe-Signature": "t=1,v1=0"}
    )
    page = unsold.get(f"/dev/checkout/{purchase.id}?token={dev(meter).page_token(purchase.id)}")

    for answer in (started, elements, refund, recharge, webhook):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["type"] == "payments_not_configured"
    assert "CREDITMETER_PAYMENTS" in started.json()["error"]["message"]
    assert page.status_code == 404  # the development provider's pages are not served
    assert meter.purchases("acme").data == before
    assert meter.purchase(purchase.id).status is PurchaseStatus.FULFILLED
    assert not meter.auto_recharge("acme").enabled
    assert len(meter.payment_events()) == 1
    assert meter.verify() == []


def test_without_a_provider_credits_are_still_granted_and_charged(
    unsold: TestClient, meter: CreditMeter
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    meter.put_feature("csv_export", rates={"calls": 5})

    granted = unsold.post("/v1/accounts/acme/grants", json={"amount": 100}, headers=admin)
    charged = unsold.post(
        "/v1/usage", json={"account": "acme", "feature": "csv_export"}, headers=admin
    )

    balance = unsold.get("/v1/accounts/acme/balance", headers=admin)

    assert granted.status_code == 200, granted.text
    assert charged.status_code == 200, charged.text
    assert balance.json()["available"] == 11_000 + 100 - 5
