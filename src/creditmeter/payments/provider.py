"""What creditmeter needs of a payment provider.

A provider starts checkouts, charges saved payment methods off-session, refunds, and
turns its signed webhook deliveries into :class:`PaymentEvent`. Events carry the
provider's objects in Stripe's shapes (``checkout.session.completed`` with a Checkout
Session, ``payment_intent.succeeded`` with a PaymentIntent, ``charge.refunded`` with a
Charge …): the development provider writes the same shapes, so one handler serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from creditmeter.core.payments import Package, PaymentEvent, Purchase, UiMode


@dataclass(frozen=True)
class CheckoutRequest:
    purchase: Purchase
    package: Package
    customer_id: str
    ui_mode: UiMode
    success_url: str | None = None
    """Hosted checkout: where the buyer returns after paying (embedded: the return URL)."""
    cancel_url: str | None = None
    save_payment_method: bool = False
    """Keep the card for later off-session charges (auto-recharge)."""


@dataclass(frozen=True)
class ProviderCheckout:
    session_id: str
    """The Checkout Session's id, or the PaymentIntent's for ``elements``."""
    payment_intent_id: str | None = None
    url: str | None = None
    client_secret: str | None = None


EventSink = Callable[[PaymentEvent], object]
Secrets = Callable[[str], str]
"""The database's random secret of a name, made on its first use."""


class PaymentProvider(Protocol):
    name: str

    def connect(self, sink: EventSink, secrets: Secrets) -> None:
        """Where to hand the events the provider makes itself, and where to keep the
        secrets it makes itself (the development provider's); a provider whose events
        come by webhook, signed under a secret it was given, ignores both."""
        ...

    def create_customer(self, account_id: str, name: str) -> str:
        """A new customer for the account; its id."""
        ...

    def create_checkout(self, request: CheckoutRequest) -> ProviderCheckout: ...

    def charge_off_session(self, purchase: Purchase, customer_id: str, payment_method: str) -> str:
        """Charge the purchase's price to a saved payment method, without the buyer;
        the PaymentIntent's id once it succeeded. Raises ``PaymentDeclined`` (carrying
        the intent's id, if one was made) when the card is refused."""
        ...

    def refund(self, purchase: Purchase, amount: int, *, idempotency_key: str) -> str:
        """Refund ``amount`` minor units of a paid purchase, once per ``idempotency_key``;
        the refund's id."""
        ...

    def parse_event(self, payload: bytes, signature: str | None) -> PaymentEvent:
        """The event of a webhook delivery whose signature verifies; ``InvalidSignature``
        otherwise (a wrong signature, or a timestamp outside the tolerance)."""
        ...
