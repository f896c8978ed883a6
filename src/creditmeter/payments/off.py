"""No payment provider: what ``creditmeter serve`` sells through until one is chosen.

Every payment operation is refused with ``PaymentsNotConfigured`` (503
``payments_not_configured`` over HTTP): a checkout, a refund through the provider, an
auto-recharge, a webhook delivery. Credits are still granted, held and charged.
"""

from __future__ import annotations

from typing import NoReturn

from creditmeter.core.payments import PaymentEvent, PaymentsNotConfigured, Purchase
from creditmeter.payments.provider import CheckoutRequest, EventSink, ProviderCheckout, Secrets

MESSAGE = (
    "payments are not configured on this server: set CREDITMETER_PAYMENTS=stripe "
    "(or dev, to try the flow without money)"
)


class PaymentsOff:
    name = "off"

    def connect(self, sink: EventSink, secrets: Secrets) -> None:
        """Nothing is sold, so nothing comes back."""

    def create_customer(self, account_id: str, name: str) -> str:
        refuse()

    def create_checkout(self, request: CheckoutRequest) -> ProviderCheckout:
        refuse()

    def charge_off_session(self, purchase: Purchase, customer_id: str, payment_method: str) -> str:
        refuse()

    def refund(self, purchase: Purchase, amount: int, *, idempotency_key: str) -> str:
        refuse()

    def parse_event(self, payload: bytes, signature: str | None) -> PaymentEvent:
        refuse()


def refuse() -> NoReturn:
    raise PaymentsNotConfigured(MESSAGE)
