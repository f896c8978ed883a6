"""Stripe, through its official SDK: Checkout Sessions (hosted and embedded pages),
PaymentIntents (the page's own Elements, and off-session recharges), refunds, and
signed webhook deliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import stripe
from stripe.params import PaymentIntentCreateParams
from stripe.params.checkout import SessionCreateParams, SessionCreateParamsLineItem

from creditmeter.core.payments import (
    InvalidSignature,
    PaymentDeclined,
    PaymentError,
    PaymentEvent,
    Purchase,
    UiMode,
)
from creditmeter.payments.provider import CheckoutRequest, EventSink, ProviderCheckout, Secrets
from creditmeter.payments.signature import TOLERANCE_SECONDS


class StripeProvider:
    name = "stripe"

    def __init__(
        self, secret_key: str, webhook_secret: str, *, api_base: str | None = None
    ) -> None:
        self._client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else {}
        )
        self._webhook_secret = webhook_secret

    def connect(self, sink: EventSink, secrets: Secrets) -> None:
        """Stripe's events come by webhook, through ``parse_event``."""

    def create_customer(self, account_id: str, name: str) -> str:
        with _stripe_errors("create the customer"):
            customer = self._client.v1.customers.create(
                {"name": name, "metadata": {"account_id": account_id}},
                {"idempotency_key": f"customer:{account_id}"},
            )
        return customer.id

    def create_checkout(self, request: CheckoutRequest) -> ProviderCheckout:
        options: stripe.RequestOptions = {"idempotency_key": f"checkout:{request.purchase.id}"}
        with _stripe_errors("start the checkout"):
            if request.ui_mode is UiMode.ELEMENTS:
                intent = self._client.v1.payment_intents.create(_elements_intent(request), options)
                return ProviderCheckout(
                    session_id=intent.id,
                    payment_intent_id=intent.id,
                    client_secret=intent.client_secret,
                )
            session = self._client.v1.checkout.sessions.create(_checkout_session(request), options)
        return ProviderCheckout(
            session_id=session.id, url=session.url, client_secret=session.client_secret
        )

    def charge_off_session(self, purchase: Purchase, customer_id: str, payment_method: str) -> str:
        with _stripe_errors("charge the saved payment method"):
            intent = self._client.v1.payment_intents.create(
                {
                    "amount": purchase.price.amount,
                    "currency": purchase.price.currency,
                    "customer": customer_id,
                    "payment_method": payment_method,
                    "off_session": True,
                    "confirm": True,
                    "metadata": _metadata(purchase),
                },
                {"idempotency_key": f"recharge:{purchase.id}"},
            )
        if intent.status != "succeeded":
            raise PaymentDeclined(
                f"the off-session payment is {intent.status}, not succeeded",
                payment_intent_id=intent.id,
            )
        return intent.id

    def refund(self, purchase: Purchase, amount: int, *, idempotency_key: str) -> str:
        if purchase.payment_intent_id is None:
            raise PaymentError(f"purchase {purchase.id} has no payment to refund")
        with _stripe_errors("refund the payment"):
            refund = self._client.v1.refunds.create(
                {"payment_intent": purchase.payment_intent_id, "amount": amount},
                {"idempotency_key": idempotency_key},
            )
        return refund.id

    def parse_event(self, payload: bytes, signature: str | None) -> PaymentEvent:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, self._webhook_secret, TOLERANCE_SECONDS
            )
            event = json.loads(payload)
            return PaymentEvent(
                id=event["id"],
                type=event["type"],
                object=event["data"]["object"],
                payload=payload.decode(),
            )
        except stripe.SignatureVerificationError as error:
            raise InvalidSignature(f"the Stripe webhook does not verify: {error}") from error
        except (ValueError, TypeError, KeyError) as error:
            raise InvalidSignature(f"the Stripe webhook is not a JSON event: {error}") from error


def _metadata(purchase: Purchase) -> dict[str, str]:
    return {
        "account_id": purchase.account_id,
        "package_id": purchase.package_id,
        "purchase_id": purchase.id,
    }


def _elements_intent(request: CheckoutRequest) -> PaymentIntentCreateParams:
    purchase = request.purchase
    params: PaymentIntentCreateParams = {
        "amount": purchase.price.amount,
        "currency": purchase.price.currency,
        "customer": request.customer_id,
        "metadata": _metadata(purchase),
    }
    if request.save_payment_method:
        params["setup_future_usage"] = "off_session"
    return params


def _checkout_session(request: CheckoutRequest) -> SessionCreateParams:
    purchase, package = request.purchase, request.package
    line_item: SessionCreateParamsLineItem = {"quantity": 1}
    if package.stripe_price_id:
        line_item["price"] = package.stripe_price_id
    else:
        line_item["price_data"] = {
            "currency": purchase.price.currency,
            "unit_amount": purchase.price.amount,
            "product_data": {"name": package.name},
        }
    params: SessionCreateParams = {
        "mode": "payment",
        "customer": request.customer_id,
        "client_reference_id": purchase.id,
        "line_items": [line_item],
        "metadata": _metadata(purchase),
        "payment_intent_data": {"metadata": _metadata(purchase)},
    }
    if request.save_payment_method:
        params["payment_intent_data"]["setup_future_usage"] = "off_session"
    # Since API version 2026-03-25 the modes are named hosted_page and embedded_page;
    # "hosted" and "embedded" are refused.
    if request.ui_mode is UiMode.EMBEDDED:
        params["ui_mode"] = "embedded_page"
        if request.success_url:
            params["return_url"] = request.success_url
    else:
        params["ui_mode"] = "hosted_page"
        if request.success_url:
            params["success_url"] = request.success_url
        if request.cancel_url:
            params["cancel_url"] = request.cancel_url
    return params


@contextmanager
def _stripe_errors(action: str) -> Iterator[None]:
    try:
        yield
    except stripe.CardError as error:
        raise PaymentDeclined(
            error.user_message or "the card was declined",
            payment_intent_id=_failed_intent_id(error),
        ) from error
    except stripe.StripeError as error:
        raise PaymentError(f"Stripe could not {action}: {error.user_message or error}") from error


def _failed_intent_id(error: stripe.CardError) -> str | None:
    intent = error.error.payment_intent if error.error else None
    return intent.id if intent else None
