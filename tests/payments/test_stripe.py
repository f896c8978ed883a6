"""The Stripe provider against a real localstripe server (which has no Checkout Sessions,
so hosted and embedded checkouts are not run here)."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import stripe

from creditmeter.core.payments import (
    InvalidSignature,
    Money,
    Package,
    PaymentDeclined,
    PaymentError,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    UiMode,
)
from creditmeter.payments.provider import CheckoutRequest, PaymentProvider
from creditmeter.payments.signature import sign
from creditmeter.payments.stripe import StripeProvider
from tests.payments.conftest import WEBHOOK_SECRET, register_webhook

PRICE = Money(2500, "usd")
PACKAGE = Package(id="starter", name="Starter pack", credits=1000, bonus_credits=0, price=PRICE)
SUCCEEDING_CARD = "4242424242424242"
CARD_DECLINED_WHEN_CHARGED = "4000000000000341"
CARD_NEEDING_AUTHENTICATION = "4000002760003184"
DELIVERY_SECONDS = 15

Delivery = tuple[bytes, str | None]


def make_purchase() -> Purchase:
    return Purchase(
        id=f"pur_{uuid.uuid4().hex}",
        account_id=f"acct-{uuid.uuid4().hex[:8]}",
        package_id=PACKAGE.id,
        kind=PurchaseKind.CHECKOUT,
        status=PurchaseStatus.PENDING,
        credits=PACKAGE.total_credits,
        bonus_credits=PACKAGE.bonus_credits,
        price=PRICE,
        provider="stripe",
        created_at=datetime.now(UTC),
    )


def purchase_metadata(purchase: Purchase) -> dict[str, str]:
    return {
        "account_id": purchase.account_id,
        "package_id": purchase.package_id,
        "purchase_id": purchase.id,
    }


def saved_card(client: stripe.StripeClient, customer_id: str, number: str) -> str:
    card = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(card.id, {"customer": customer_id})
    return card.id


def paid_purchase(provider: StripeProvider, client: stripe.StripeClient) -> tuple[Purchase, str]:
    """A purchase charged to a good card, and the PaymentIntent that paid it."""
    purchase = make_purchase()
    customer_id = provider.create_customer(purchase.account_id, "Ada")
    card = saved_card(client, customer_id, SUCCEEDING_CARD)
    return purchase, provider.charge_off_session(purchase, customer_id, card)


def test_is_a_payment_provider_named_stripe(stripe_provider: StripeProvider) -> None:
    provider: PaymentProvider = stripe_provider
    assert provider.name == "stripe"


def test_create_customer_records_the_account(
    stripe_provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    customer_id = stripe_provider.create_customer("acct-ada", "Ada Lovelace")

    customer = stripe_client.v1.customers.retrieve(customer_id)
    assert customer.name == "Ada Lovelace"
    assert customer.metadata is not None
    assert customer.metadata.to_dict() == {"account_id": "acct-ada"}


def test_elements_checkout_makes_a_payment_intent_for_the_purchase(
    stripe_provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    purchase = make_purchase()
    customer_id = stripe_provider.create_customer(purchase.account_id, "Ada")

    checkout = stripe_provider.create_checkout(
        CheckoutRequest(purchase, PACKAGE, customer_id, UiMode.ELEMENTS)
    )

    assert checkout.payment_intent_id == checkout.session_id
    assert checkout.url is None
    intent = stripe_client.v1.payment_intents.retrieve(checkout.session_id)
    secret = checkout.client_secret
    assert secret is not None
    assert secret.startswith(f"{intent.id}_secret_")
    assert secret == intent.client_secret
    assert (intent.amount, intent.currency, intent.customer) == (2500, "usd", customer_id)
    assert intent.status == "requires_payment_method"
    assert intent.metadata.to_dict() == purchase_metadata(purchase)


def test_a_stripe_refusal_is_a_payment_error(stripe_provider: StripeProvider) -> None:
    request = CheckoutRequest(make_purchase(), PACKAGE, "cus_missing", UiMode.ELEMENTS)

    with pytest.raises(PaymentError, match="Stripe could not start the checkout") as refused:
        stripe_provider.create_checkout(request)
    assert not isinstance(refused.value, PaymentDeclined)


def test_off_session_charge_of_a_good_card_succeeds(
    stripe_provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    purchase = make_purchase()
    customer_id = stripe_provider.create_customer(purchase.account_id, "Ada")
    card = saved_card(stripe_client, customer_id, SUCCEEDING_CARD)

    intent_id = stripe_provider.charge_off_session(purchase, customer_id, card)

    intent = stripe_client.v1.payment_intents.retrieve(intent_id)
    assert intent.status == "succeeded"
    assert (intent.amount, intent.currency, intent.customer) == (2500, "usd", customer_id)
    assert intent.payment_method == card
    assert intent.metadata.to_dict() == purchase_metadata(purchase)


def test_off_session_charge_of_a_refused_card_is_declined(
    stripe_provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    purchase = make_purchase()
    customer_id = stripe_provider.create_customer(purchase.account_id, "Ada")
    card = saved_card(stripe_client, customer_id, CARD_DECLINED_WHEN_CHARGED)

    with pytest.raises(PaymentDeclined, match="declined"):
        stripe_provider.charge_off_session(purchase, customer_id, card)


def test_off_session_charge_that_needs_the_buyer_is_declined_with_its_intent(
    stripe_provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    purchase = make_purchase()
    customer_id = stripe_provider.create_customer(purchase.account_id, "Ada")
    card = saved_card(stripe_client, customer_id, CARD_NEEDING_AUTHENTICATION)

    with pytest.raises(PaymentDeclined, match="requires_action") as declined:
        stripe_provider.charge_off_session(purchase, customer_id, card)

    intent_id = declined.value.payment_intent_id
    assert intent_id is not None
    intent = stripe_client.v1.payment_intents.retrieve(intent_id)
    assert intent.status == "requires_action"
    assert intent.metadata.to_dict() == purchase_metadata(purchase)


def test_refund_returns_part_then_the_rest_of_a_payment(
    stripe_provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    purchase, intent_id = paid_purchase(stripe_provider, stripe_client)
    paid = replace(purchase, payment_intent_id=intent_id, amount_paid=2500)

    first_id = stripe_provider.refund(paid, 1000, idempotency_key="r1")
    rest_id = stripe_provider.refund(
        replace(paid, amount_refunded=1000), 1500, idempotency_key="r2"
    )

    first = stripe_client.v1.refunds.retrieve(first_id)
    rest = stripe_client.v1.refunds.retrieve(rest_id)
    assert first_id != rest_id
    assert (first.amount, first.status, first.payment_intent) == (1000, "succeeded", intent_id)
    assert (rest.amount, rest.status, rest.payment_intent) == (1500, "succeeded", intent_id)


def test_refund_of_an_unpaid_purchase_is_a_payment_error(stripe_provider: StripeProvider) -> None:
    with pytest.raises(PaymentError, match="no payment to refund"):
        stripe_provider.refund(make_purchase(), 1000, idempotency_key="r3")


EVENT = json.dumps(
    {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 2500}},
    }
).encode()


def test_parse_event_accepts_a_signed_delivery(stripe_provider: StripeProvider) -> None:
    event = stripe_provider.parse_event(EVENT, sign(EVENT, WEBHOOK_SECRET))

    assert (event.id, event.type) == ("evt_1", "payment_intent.succeeded")
    assert event.object == {"id": "pi_1", "object": "payment_intent", "amount": 2500}
    assert type(event.object) is dict
    assert event.payload == EVENT.decode()


UNVERIFIED = "does not verify"
NOT_AN_EVENT = "not a JSON event"


def signed(secret: str, age: int = 0, body: bytes | None = None) -> Callable[[bytes], str]:
    """A signature made when the test runs (made at collection, it could be stale by
    then), under ``secret``, ``age`` seconds old, of ``body`` or the payload itself."""
    return lambda payload: sign(body or payload, secret, int(time.time()) - age)


@pytest.mark.parametrize(
    ("payload", "signature", "reason"),
    [
        pytest.param(EVENT, signed("whsec_other"), UNVERIFIED, id="wrong secret"),
        pytest.param(
            EVENT.replace(b"2500", b"9999"),
            signed(WEBHOOK_SECRET, body=EVENT),
            UNVERIFIED,
            id="tampered",
        ),
        pytest.param(EVENT, signed(WEBHOOK_SECRET, age=301), UNVERIFIED, id="stale"),
        pytest.param(EVENT, lambda _: None, UNVERIFIED, id="no header"),
        pytest.param(EVENT, lambda _: "", UNVERIFIED, id="empty header"),
        pytest.param(EVENT, lambda _: "v1=abc", UNVERIFIED, id="no timestamp"),
        pytest.param(b"{not", signed(WEBHOOK_SECRET), NOT_AN_EVENT, id="signed non-JSON"),
        pytest.param(b"[]", signed(WEBHOOK_SECRET), NOT_AN_EVENT, id="signed non-event"),
        pytest.param(b"\xff", signed(WEBHOOK_SECRET), NOT_AN_EVENT, id="not UTF-8"),
    ],
)
def test_parse_event_refuses(
    stripe_provider: StripeProvider,
    payload: bytes,
    signature: Callable[[bytes], str | None],
    reason: str,
) -> None:
    with pytest.raises(InvalidSignature, match=reason):
        stripe_provider.parse_event(payload, signature(payload))


@pytest.fixture
def webhook_endpoint() -> Iterator[tuple[str, queue.Queue[Delivery]]]:
    """A local HTTP endpoint that answers 200 and queues each delivery it receives."""
    deliveries: queue.Queue[Delivery] = queue.Queue()

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            deliveries.put((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/webhooks/stripe", deliveries
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_parse_event_accepts_localstripes_own_delivery(
    stripe_provider: StripeProvider,
    stripe_client: stripe.StripeClient,
    localstripe_url: str,
    webhook_endpoint: tuple[str, queue.Queue[Delivery]],
) -> None:
    endpoint_url, deliveries = webhook_endpoint
    register_webhook(localstripe_url, f"test-{uuid.uuid4().hex}", endpoint_url, WEBHOOK_SECRET)

    purchase, intent_id = paid_purchase(stripe_provider, stripe_client)

    deadline = time.monotonic() + DELIVERY_SECONDS
    while True:
        payload, signature = deliveries.get(timeout=max(deadline - time.monotonic(), 0.01))
        event = stripe_provider.parse_event(payload, signature)
        if event.type == "payment_intent.succeeded" and event.object["id"] == intent_id:
            break
    assert event.object["metadata"]["purchase_id"] == purchase.id
    assert event.object["amount"] == 2500
