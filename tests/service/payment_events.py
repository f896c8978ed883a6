"""Payment providers' events for tests: Stripe's shapes, signed with Stripe's scheme
under the development provider's secret, and delivered through the library."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from creditmeter import CreditMeter
from creditmeter.core.payments import Purchase
from creditmeter.payments.dev import DevProvider
from creditmeter.payments.signature import sign

_ids = itertools.count(1)


def event_body(kind: str, obj: Mapping[str, Any], event_id: str | None = None) -> bytes:
    body = {
        "id": event_id or f"evt_test_{next(_ids)}",
        "object": "event",
        "type": kind,
        "data": {"object": dict(obj)},
    }
    return json.dumps(body).encode()


def deliver(
    meter: CreditMeter, kind: str, obj: Mapping[str, Any], event_id: str | None = None
) -> bool:
    """Deliver a signed event as a webhook would; whether it was new."""
    payload = event_body(kind, obj, event_id)
    return meter.receive_payment_event(payload, sign(payload, webhook_secret(meter)))


def webhook_secret(meter: CreditMeter) -> str:
    """The development provider's webhook secret, random to the meter's database."""
    assert isinstance(meter.payments, DevProvider)
    return meter.payments.webhook_secret


def drain(meter: CreditMeter) -> int:
    """Run jobs until none is due; how many ran."""
    total = 0
    while ran := meter.work(limit=100):
        total += ran
    return total


def metadata(purchase: Purchase) -> dict[str, str]:
    return {
        "account_id": purchase.account_id,
        "package_id": purchase.package_id,
        "purchase_id": purchase.id,
    }


def session_completed(
    purchase: Purchase, *, amount: int | None = None, currency: str | None = None
) -> dict[str, Any]:
    """A paid Checkout Session for the purchase (by default for its price)."""
    return {
        "id": purchase.session_id or f"cs_test_{purchase.id}",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "amount_total": purchase.price.amount if amount is None else amount,
        "currency": currency or purchase.price.currency,
        "payment_intent": f"pi_test_{purchase.id}",
        "metadata": metadata(purchase),
    }


def intent(purchase: Purchase, status: str = "succeeded") -> dict[str, Any]:
    return {
        "id": purchase.payment_intent_id or f"pi_test_{purchase.id}",
        "object": "payment_intent",
        "status": status,
        "amount": purchase.price.amount,
        "amount_received": purchase.price.amount if status == "succeeded" else 0,
        "currency": purchase.price.currency,
        "metadata": metadata(purchase),
        "last_payment_error": None
        if status == "succeeded"
        else {"code": "card_declined", "message": "Your card was declined."},
    }


def charge_refunded(purchase: Purchase, amount_refunded: int) -> dict[str, Any]:
    return {
        "id": f"ch_test_{purchase.id}",
        "object": "charge",
        "amount": purchase.price.amount,
        "amount_refunded": amount_refunded,
        "currency": purchase.price.currency,
        "payment_intent": purchase.payment_intent_id or f"pi_test_{purchase.id}",
        "metadata": metadata(purchase),
    }
