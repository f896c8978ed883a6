"""The development provider: the whole purchase flow with no keys and no network.

Checkouts point at a local page (``/dev/checkout/<purchase>?token=<token>`` on the
creditmeter server) whose button completes the payment; the token, a MAC of the purchase
under a key random to the database, lets only whoever was shown the checkout pay it.
Off-session charges succeed at once, except with a payment method whose name contains
``decline`` (``pm_dev_declined``). Every payment, failure and refund becomes an event in
Stripe's shapes, handed to the sink that the library connects, as Stripe's webhooks would
deliver it; a signed webhook delivery (Stripe's scheme, under ``webhook_secret``, random
to the database too) is accepted as well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

from creditmeter.core.ids import new_id
from creditmeter.core.payments import (
    InvalidSignature,
    PaymentDeclined,
    PaymentEvent,
    Purchase,
    UiMode,
)
from creditmeter.payments import signature
from creditmeter.payments.provider import CheckoutRequest, EventSink, ProviderCheckout, Secrets

DECLINING_CARD: Final = "pm_dev_declined"
WORKING_CARD: Final = "pm_dev_visa"


class DevProvider:
    name = "dev"

    def __init__(self, base_url: str = "http://127.0.0.1:8000") -> None:
        self.base_url = base_url.rstrip("/")
        self._sink: EventSink | None = None
        self._secrets: Secrets | None = None

    def connect(self, sink: EventSink, secrets: Secrets) -> None:
        self._sink = sink
        self._secrets = secrets

    @property
    def webhook_secret(self) -> str:
        """What deliveries to the webhook are signed under: random to the database."""
        return f"whsec_{self._secret('dev_webhook_secret')}"

    def page_token(self, purchase_id: str) -> str:
        """The token of the purchase's checkout page, given only with its checkout."""
        key = self._secret("dev_checkout_key").encode()
        return hmac.new(key, purchase_id.encode(), hashlib.sha256).hexdigest()[:32]

    def admits(self, purchase_id: str, token: str) -> bool:
        """Whether ``token`` is the purchase's checkout page token."""
        return hmac.compare_digest(token.encode(), self.page_token(purchase_id).encode())

    def _secret(self, name: str) -> str:
        if self._secrets is None:
            raise RuntimeError("the development provider is connected to no library")
        return self._secrets(name)

    def create_customer(self, account_id: str, name: str) -> str:
        return f"cus_dev_{account_id}"

    def create_checkout(self, request: CheckoutRequest) -> ProviderCheckout:
        purchase = request.purchase
        if request.ui_mode is UiMode.ELEMENTS:
            intent = intent_id(purchase)
            return ProviderCheckout(
                session_id=intent,
                payment_intent_id=intent,
                client_secret=f"{intent}_secret_{self.page_token(purchase.id)}",
            )
        session = f"cs_dev_{purchase.id}"
        if request.ui_mode is UiMode.EMBEDDED:
            return ProviderCheckout(
                session_id=session, client_secret=f"{session}_secret_{self.page_token(purchase.id)}"
            )
        return ProviderCheckout(session_id=session, url=self.checkout_url(purchase.id))

    def checkout_url(self, purchase_id: str) -> str:
        """The purchase's checkout page; for an embedded or elements checkout, its token
        is what follows ``_secret_`` in the client secret."""
        return f"{self.base_url}/dev/checkout/{purchase_id}?token={self.page_token(purchase_id)}"

    def charge_off_session(self, purchase: Purchase, customer_id: str, payment_method: str) -> str:
        intent = intent_id(purchase)
        if "decline" in payment_method:
            message = "Your card was declined."
            self._deliver(
                "payment_intent.payment_failed",
                _intent(purchase, intent, "requires_payment_method", customer_id)
                | {"last_payment_error": {"code": "card_declined", "message": message}},
            )
            raise PaymentDeclined(message, payment_intent_id=intent)
        self._deliver(
            "payment_intent.succeeded", _intent(purchase, intent, "succeeded", customer_id)
        )
        return intent

    def refund(self, purchase: Purchase, amount: int, *, idempotency_key: str) -> str:
        refunded = purchase.amount_refunded + amount
        self._deliver(
            "charge.refunded",
            {
                "id": f"ch_dev_{purchase.id}",
                "object": "charge",
                "amount": purchase.amount_paid,
                "amount_refunded": refunded,
                "currency": purchase.price.currency,
                "payment_intent": purchase.payment_intent_id,
                "refunded": refunded >= purchase.amount_paid,
                "metadata": _metadata(purchase),
            },
        )
        return new_id("re_dev")

    def complete(self, purchase: Purchase, *, customer_id: str | None = None) -> None:
        """What the local checkout page's button does: the buyer paid."""
        if purchase.session_id and purchase.session_id.startswith("pi_"):
            self._deliver(
                "payment_intent.succeeded",
                _intent(purchase, purchase.session_id, "succeeded", customer_id),
            )
            return
        self._deliver(
            "checkout.session.completed",
            {
                "id": purchase.session_id or f"cs_dev_{purchase.id}",
                "object": "checkout.session",
                "mode": "payment",
                "payment_status": "paid",
                "status": "complete",
                "amount_total": purchase.price.amount,
                "currency": purchase.price.currency,
                "customer": customer_id,
                "client_reference_id": purchase.id,
                "payment_intent": intent_id(purchase),
                "metadata": _metadata(purchase),
            },
        )

    def parse_event(self, payload: bytes, signature_header: str | None) -> PaymentEvent:
        signature.verify(payload, signature_header, self.webhook_secret)
        return event_of(payload)

    def _deliver(self, kind: str, obj: Mapping[str, Any]) -> None:
        if self._sink is None:
            raise RuntimeError("the development provider is connected to no library")
        event_id = new_id("evt_dev")
        body = {"id": event_id, "object": "event", "type": kind, "data": {"object": dict(obj)}}
        self._sink(PaymentEvent(event_id, kind, obj, json.dumps(body)))


def event_of(payload: bytes) -> PaymentEvent:
    """The event in a webhook delivery's body (Stripe's event shape)."""
    try:
        body = json.loads(payload)
        return PaymentEvent(
            id=str(body["id"]),
            type=str(body["type"]),
            object=body["data"]["object"],
            payload=payload.decode(),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidSignature(f"the body is not an event: {error}") from None


def intent_id(purchase: Purchase) -> str:
    return purchase.payment_intent_id or f"pi_dev_{purchase.id}"


def _metadata(purchase: Purchase) -> dict[str, str]:
    return {
        "account_id": purchase.account_id,
        "package_id": purchase.package_id,
        "purchase_id": purchase.id,
    }


def _intent(
    purchase: Purchase, intent: str, status: str, customer_id: str | None
) -> dict[str, Any]:
    return {
        "id": intent,
        "object": "payment_intent",
        "status": status,
        "amount": purchase.price.amount,
        "amount_received": purchase.price.amount if status == "succeeded" else 0,
        "currency": purchase.price.currency,
        "customer": customer_id,
        "metadata": _metadata(purchase),
    }
