"""Payments end to end: a live ``creditmeter serve`` on Stripe's official SDK pointed at a
real localstripe, which delivers its signed webhooks to the server, on both engines.

A buyer's page confirms an ``elements`` purchase with a test card; usage below the
threshold recharges off-session; a declining card disables auto-recharge after three
failures; a refund claws the credits back. The server's own worker thread applies every
event: the tests only watch.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import stripe

from creditmeter.payments.signature import sign
from tests.client.conftest import Server, module_database_url, start_server
from tests.conftest import ENGINES
from tests.payments.conftest import WEBHOOK_SECRET, register_webhook

__all__ = ["module_database_url"]  # the fixture, one database per engine

ADMIN_KEY = "payments-e2e-admin-key-of-32-characters-or-more"
WORKING_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"  # attaches, then fails when charged
WAIT_SECONDS = 20.0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "module_database_url" in metafunc.fixturenames:
        metafunc.parametrize("module_database_url", ENGINES, indirect=True, scope="module")


@dataclass
class Shop:
    server: Server
    http: httpx2.Client
    stripe: stripe.StripeClient

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json()

    def new_account(self) -> str:
        account = f"acct-{uuid.uuid4().hex[:10]}"
        self.call("POST", "/v1/accounts", {"id": account})
        return account

    def card(self, number: str, customer: str | None = None) -> str:
        method = self.stripe.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        if customer is not None:
            self.stripe.v1.payment_methods.attach(method.id, {"customer": customer})
        return method.id

    def buy(self, account: str) -> tuple[str, str]:
        """Buy the pack on the account's own page (Elements, a working card): the
        purchase's id and the account's customer at Stripe."""
        checkout = self.call(
            "POST",
            f"/v1/accounts/{account}/checkout",
            {"package": "pack", "ui_mode": "elements"},
        )
        intent = checkout["session_id"]
        self.stripe.v1.payment_intents.update(intent, {"payment_method": self.card(WORKING_CARD)})
        confirmed = self.stripe.v1.payment_intents.confirm(intent)
        assert confirmed.status == "succeeded"
        purchase = checkout["purchase_id"]
        self.wait_for(lambda: self.purchase(account, purchase)["status"] == "fulfilled")
        return purchase, str(confirmed.customer)

    def purchase(self, account: str, purchase: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", f"/v1/accounts/{account}/purchases/{purchase}")
        return found

    def purchases(self, account: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call("GET", f"/v1/accounts/{account}/purchases")["data"]
        return found

    def available(self, account: str) -> int:
        found: int = self.call("GET", f"/v1/accounts/{account}/balance")["available"]
        return found

    def use(self, account: str, calls: int) -> None:
        self.call(
            "POST", "/v1/usage", {"account": account, "feature": "chat", "usage": {"calls": calls}}
        )

    def wait_for(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"not done in {WAIT_SECONDS} s; server log:\n{self.server.output()}")
            time.sleep(0.1)

    def settled(self, account: str) -> int:
        """The account's balance once the webhooks in flight have arrived."""
        time.sleep(2.0)  # localstripe delivers about a second after the change
        return self.available(account)


@pytest.fixture(scope="module")
def shop(
    module_database_url: str, localstripe_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    server = start_server(
        module_database_url,
        tmp_path_factory.mktemp("log") / "serve.log",
        admin_key=ADMIN_KEY,
        env={
            "CREDITMETER_PAYMENTS": "stripe",
            "CREDITMETER_STRIPE_SECRET_KEY": "sk_test_creditmeter",
            "CREDITMETER_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "CREDITMETER_STRIPE_API_BASE": localstripe_url,
            "CREDITMETER_WORKER_INTERVAL": "0.1",
        },
    )
    register_webhook(
        localstripe_url,
        f"creditmeter-{uuid.uuid4().hex[:8]}",
        f"{server.url}/v1/webhooks/stripe",
        WEBHOOK_SECRET,
    )
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    client = stripe.StripeClient("sk_test_creditmeter", base_addresses={"api": localstripe_url})
    try:
        with httpx2.Client(base_url=server.url, headers=headers, timeout=10) as http:
            shop = Shop(server, http, client)
            shop.call("PUT", "/v1/features/chat", {"rates": {"calls": "1"}})
            shop.call(
                "PUT",
                "/v1/packages/pack",
                {
                    "credits": 1000,
                    "bonus_credits": 100,
                    "price": {"amount": 999, "currency": "usd"},
                },
            )
            shop.call(
                "PUT",
                "/v1/settings",
                {"auto_recharge_retry_seconds": 0, "auto_recharge_max_failures": 3},
            )
            yield shop
    finally:
        server.stop()


def test_an_elements_purchase_with_a_test_card_credits_the_account_once(shop: Shop) -> None:
    account = shop.new_account()
    purchase, customer = shop.buy(account)

    assert shop.settled(account) == 1100
    bought = shop.purchase(account, purchase)
    assert (bought["amount_paid"], bought["credits"]) == (999, 1100)
    assert bought["payment_intent_id"] == bought["session_id"]
    assert customer.startswith("cus_")
    ledger = shop.call("GET", f"/v1/accounts/{account}/transactions?type=purchase")["data"]
    assert len(ledger) == 1


def test_usage_below_the_threshold_recharges_off_session_once(shop: Shop) -> None:
    account = shop.new_account()
    _, customer = shop.buy(account)
    card = shop.card(WORKING_CARD, customer)
    shop.call(
        "PUT",
        f"/v1/accounts/{account}/auto-recharge",
        {"enabled": True, "threshold": 500, "package": "pack", "payment_method": card},
    )

    shop.use(account, 700)  # 400 left: below 500
    shop.use(account, 10)  # still below, one recharge already in flight

    def recharged() -> bool:
        kinds = [(p["kind"], p["status"]) for p in shop.purchases(account)]
        return ("auto_recharge", "fulfilled") in kinds

    shop.wait_for(recharged)
    assert shop.settled(account) == 1100 - 710 + 1100
    recharges = [p for p in shop.purchases(account) if p["kind"] == "auto_recharge"]
    assert len(recharges) == 1
    intent = shop.stripe.v1.payment_intents.retrieve(recharges[0]["payment_intent_id"])
    assert (intent.status, intent.customer, intent.payment_method) == ("succeeded", customer, card)
    assert intent.metadata.to_dict() == {
        "account_id": account,
        "package_id": "pack",
        "purchase_id": recharges[0]["id"],
    }


def test_a_declining_card_disables_auto_recharge_after_three_failures(shop: Shop) -> None:
    account = shop.new_account()
    _, customer = shop.buy(account)
    card = shop.card(DECLINING_CARD, customer)
    shop.call(
        "PUT",
        f"/v1/accounts/{account}/auto-recharge",
        {"enabled": True, "threshold": 500, "package": "pack", "payment_method": card},
    )

    def failures() -> int:
        config = shop.call("GET", f"/v1/accounts/{account}/auto-recharge")
        return 0 if config["pending_purchase_id"] else int(config["consecutive_failures"])

    shop.use(account, 700)
    for attempt in range(1, 3):
        shop.wait_for(lambda attempt=attempt: failures() == attempt)  # type: ignore[misc]
        shop.use(account, 1)
    shop.wait_for(lambda: failures() == 3)

    config = shop.call("GET", f"/v1/accounts/{account}/auto-recharge")
    assert config["enabled"] is False
    assert "disabled after 3 failed recharges" in config["disabled_reason"]
    shop.use(account, 1)
    assert shop.settled(account) == 1100 - 703  # nothing credited, no fourth attempt
    statuses = [p["status"] for p in shop.purchases(account) if p["kind"] == "auto_recharge"]
    assert statuses == ["failed"] * 3


def test_a_refund_claws_the_credits_back(shop: Shop) -> None:
    account = shop.new_account()
    purchase, _ = shop.buy(account)

    partly = shop.call(
        "POST", f"/v1/accounts/{account}/purchases/{purchase}/refund", {"amount": 333}
    )
    assert (partly["amount_refunded"], partly["credits_clawed_back"]) == (333, 366)
    refunds = shop.stripe.v1.refunds.list({"payment_intent": partly["payment_intent_id"]})
    assert [r.amount for r in refunds.data] == [333]

    # The rest refunded in Stripe's dashboard: only its webhook tells creditmeter.
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": "ch_dashboard",
                "object": "charge",
                "amount": 999,
                "amount_refunded": 999,
                "currency": "usd",
                "payment_intent": partly["payment_intent_id"],
            }
        },
    }
    body = json.dumps(event).encode()
    for _ in range(2):
        response = shop.http.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)},
        )
        assert response.status_code == 200, response.text
    shop.wait_for(lambda: shop.purchase(account, purchase)["status"] == "refunded")
    assert shop.purchase(account, purchase)["credits_clawed_back"] == 1100
    assert shop.settled(account) == 0
