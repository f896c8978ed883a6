"""Selling credits: money, credit packs, purchases, auto-recharge and refunds' clawback.

Money is an integer amount of a currency's minor units (cents, pence) and the currency's
ISO 4217 code in lower case, as payment providers write it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from creditmeter.core.errors import CreditMeterError, InvalidRequest
from creditmeter.core.pricing import credit_amount
from creditmeter.core.types import AccountId, Credits

MAX_MINOR_UNITS: Final = 10**12
"""The largest price one purchase may have: ten billion dollars, in cents."""

CURRENCIES: Final = frozenset(
    {"usd", "eur", "gbp", "cad", "aud", "nzd", "chf", "sek", "nok", "dkk", "pln", "jpy", "inr"}
)
"""Currencies a package may be priced in."""


ZERO_DECIMAL: Final = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd"}
    | {"vuv", "xaf", "xof", "xpf"}
)
THREE_DECIMAL: Final = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
"""Currencies whose minor unit is not a hundredth: a yen has none, a dinar a thousandth."""


def amount_text(amount: int, currency: str) -> str:
    """An amount of minor units as written in major units: ``999 usd`` is ``9.99``,
    ``1500 jpy`` is ``1,500``; integer arithmetic, never a float."""
    code = currency.lower()
    digits = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**digits)
    return f"{sign}{major:,}" + (f".{minor:0{digits}d}" if digits else "")


@dataclass(frozen=True)
class Money:
    amount: int
    """In the currency's minor units."""
    currency: str

    def __str__(self) -> str:
        return f"{amount_text(self.amount, self.currency)} {self.currency.upper()}"


def money(amount: object, currency: object, what: str = "price") -> Money:
    """A price, checked: a whole number of minor units ≥ 1 and a known currency."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest(f"{what} must be a whole number of minor units, not {amount!r}")
    if not 1 <= amount <= MAX_MINOR_UNITS:
        raise InvalidRequest(f"{what} must be 1 to {MAX_MINOR_UNITS} minor units")
    code = currency.lower() if isinstance(currency, str) else ""
    if code not in CURRENCIES:
        known = ", ".join(sorted(CURRENCIES))
        raise InvalidRequest(f"currency must be one of {known}, not {currency!r}")
    return Money(amount, code)


@dataclass(frozen=True)
class Package:
    """A credit pack for sale."""

    id: str
    name: str
    credits: Credits
    bonus_credits: Credits
    price: Money
    popular: bool = False
    best_value: bool = False
    active: bool = True
    sort_order: int = 0
    stripe_price_id: str | None = None

    @property
    def total_credits(self) -> Credits:
        return self.credits + self.bonus_credits


def package(
    package_id: str,
    *,
    name: str,
    credits: object,
    bonus_credits: object,
    price: Money,
    popular: bool,
    best_value: bool,
    active: bool,
    sort_order: int,
    stripe_price_id: str | None,
) -> Package:
    credits = credit_amount(credits, "credits", minimum=1)
    bonus = credit_amount(bonus_credits, "bonus_credits")
    credit_amount(credits + bonus, "credits + bonus_credits")
    if stripe_price_id is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,255}", stripe_price_id):
        raise InvalidRequest("stripe_price_id must be a Stripe price id such as price_123")
    if isinstance(sort_order, bool) or not isinstance(sort_order, int):
        raise InvalidRequest("sort_order must be an integer")
    return Package(
        id=package_id,
        name=name or package_id,
        credits=credits,
        bonus_credits=bonus,
        price=price,
        popular=popular,
        best_value=best_value,
        active=active,
        sort_order=sort_order,
        stripe_price_id=stripe_price_id,
    )


BOOST_SHAPES: Final = (
    # (id suffix, multiple of the base credits and price, bonus percent, badge)
    ("half", 1, 2, 0),
    ("single", 1, 1, 10),
    ("double", 2, 1, 15),
)


def boost_packs(
    base_credits: Credits, base_price: Money, *, prefix: str = "boost"
) -> list[Package]:
    """Boost packs derived from the smallest subscription: half its credits for half its
    price with no bonus, the same credits and price with 10 % more, and twice both with
    15 % more (marked best value; the middle one popular)."""
    base_credits = credit_amount(base_credits, "base credits", minimum=2)
    packs = []
    for order, (suffix, numerator, denominator, bonus_percent) in enumerate(BOOST_SHAPES):
        credits = base_credits * numerator // denominator
        amount = base_price.amount * numerator // denominator
        packs.append(
            package(
                f"{prefix}-{suffix}",
                name=f"Boost: {credits} credits"
                + (f" +{bonus_percent} %" if bonus_percent else ""),
                credits=credits,
                bonus_credits=credits * bonus_percent // 100,
                price=money(amount, base_price.currency),
                popular=suffix == "single",
                best_value=suffix == "double",
                active=True,
                sort_order=order,
                stripe_price_id=None,
            )
        )
    return packs


class PurchaseStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    FAILED = "failed"
    REFUNDED = "refunded"


OPEN_STATUSES: Final = frozenset({PurchaseStatus.PENDING, PurchaseStatus.PAID})


class PurchaseKind(StrEnum):
    CHECKOUT = "checkout"
    """Started by ``checkout`` (a hosted or embedded session, or a payment intent)."""
    AUTO_RECHARGE = "auto_recharge"
    """Started off-session when the balance fell below the account's threshold."""
    EXTERNAL = "external"
    """Paid outside creditmeter (a payment link) with the account and package in its
    metadata."""


class UiMode(StrEnum):
    HOSTED = "hosted"
    EMBEDDED = "embedded"
    ELEMENTS = "elements"


@dataclass(frozen=True)
class Purchase:
    id: str
    account_id: AccountId
    package_id: str
    kind: PurchaseKind
    status: PurchaseStatus
    credits: Credits
    """The package's credits and bonus credits, as sold."""
    bonus_credits: Credits
    """How many of ``credits`` are bonus."""
    price: Money
    provider: str
    created_at: datetime
    session_id: str | None = None
    payment_intent_id: str | None = None
    amount_paid: int = 0
    amount_refunded: int = 0
    credits_clawed_back: Credits = 0
    clawback_debt: Credits = 0
    """Clawed-back credits that neither the purchase nor the account's other credits
    had left: the account owes them, its balance below zero."""
    credits_unrecovered: Credits = 0
    """Clawed-back credits that were spent already, recorded as owed and not taken from
    the balance (the ``debt`` refund shortfall)."""
    failure_reason: str | None = None
    paid_at: datetime | None = None
    fulfilled_at: datetime | None = None
    transaction_id: str | None = None


@dataclass(frozen=True)
class PaymentEvent:
    """A payment provider's event, as its signed delivery said: Stripe's shapes, which the
    development provider writes too."""

    id: str
    type: str
    object: Mapping[str, Any]
    """The event's ``data.object``."""
    payload: str
    """The delivery's body as received, kept as it was."""


@dataclass(frozen=True)
class Checkout:
    """A checkout just started: where to send the buyer (``url``), or what the page's
    payment form needs (``client_secret``)."""

    purchase_id: str
    session_id: str
    ui_mode: UiMode
    url: str | None = None
    client_secret: str | None = None


@dataclass(frozen=True)
class AutoRecharge:
    account_id: AccountId
    enabled: bool
    threshold: Credits
    package_id: str | None
    payment_method: str | None
    monthly_cap: int | None
    """The most that auto-recharge may charge in a calendar month (UTC), in the minor
    units of the package's currency; ``None``: no cap."""
    consecutive_failures: int = 0
    disabled_reason: str | None = None
    pending_purchase_id: str | None = None
    retry_at: datetime | None = None


class RefundShortfall(StrEnum):
    """What happens to refunded credits that were already spent."""

    ADJUSTMENT = "adjustment"
    """A negative adjustment: they are taken from the account's other credits now, in
    consumption order; what those cannot cover is debt, the balance below zero until the
    next credits repay it."""
    DEBT = "debt"
    """Recorded debt: they are recorded on the purchase as owed (to collect outside
    creditmeter); the balance keeps the account's other credits."""


def clawback_target(credits: Credits, amount_paid: int, amount_refunded: int) -> Credits:
    """How many of a purchase's credits a refund of ``amount_refunded`` (all refunds so
    far) takes back: pro rata, rounded down, all of them for a full refund."""
    if amount_paid <= 0:
        return 0
    refunded = min(max(amount_refunded, 0), amount_paid)
    return credits * refunded // amount_paid


class PaymentError(CreditMeterError):
    """A payment provider refused or failed a request."""

    code = "payment_provider_error"


class PaymentDeclined(PaymentError):
    """The card or bank refused the charge."""

    code = "payment_declined"

    def __init__(self, message: str, *, payment_intent_id: str | None = None) -> None:
        super().__init__(message)
        self.payment_intent_id = payment_intent_id


class PaymentsNotConfigured(PaymentError):
    """No payment provider is configured: credits are not sold, nothing was changed."""

    code = "payments_not_configured"


class InvalidSignature(CreditMeterError):
    """A webhook whose signature or timestamp does not verify."""

    code = "invalid_signature"
