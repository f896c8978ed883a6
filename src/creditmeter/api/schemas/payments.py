"""Credit packs, checkout, purchases, auto-recharge and payment events. Money is a whole
number of the currency's minor units (cents) with the currency's code: never a float."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from creditmeter.api.schemas.common import (
    NO_NUL,
    Body,
    Credits,
    Identifier,
    PositiveCredits,
    Text,
    Whole,
)
from creditmeter.api.schemas.ledger import Reason
from creditmeter.core.payments import (
    MAX_MINOR_UNITS,
    AutoRecharge,
    Checkout,
    Money,
    Package,
    Purchase,
)
from creditmeter.core.types import MAX_CREDITS

Currency = Literal[
    "aud", "cad", "chf", "dkk", "eur", "gbp", "inr", "jpy", "nok", "nzd", "pln", "sek", "usd"
]
"""The values of ``core.payments.CURRENCIES``, ISO 4217 in lower case as Stripe writes it."""

MinorUnits = Annotated[
    StrictInt,
    Field(
        ge=1,
        le=MAX_MINOR_UNITS,
        description="A whole number of the currency's minor units (cents): 999 is $9.99.",
    ),
    Whole,
]
SortOrder = Annotated[
    StrictInt, Field(ge=-(2**31), le=2**31 - 1, description="Lower is listed first."), Whole
]
ProviderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,255}$")]
"""An id at the payment provider: ``price_…``, ``pm_…``."""
ReturnUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        pattern=r"^https?://[^\s\x00]+$",
        examples=["https://example.com/billing/done"],
    ),
]
UiModeName = Literal["hosted", "embedded", "elements"]
"""The values of ``UiMode``: a strict body takes a literal, not an enum."""
PaymentEventStatus = Literal["received", "applied", "ignored", "flagged"]


class MoneyIn(Body):
    amount: MinorUnits
    currency: Currency

    model_config = ConfigDict(json_schema_extra={"examples": [{"amount": 999, "currency": "usd"}]})


class MoneyOut(BaseModel):
    amount: int = Field(description="In the currency's minor units (cents).")
    currency: str

    @classmethod
    def of(cls, m: Money) -> MoneyOut:
        return cls(amount=m.amount, currency=m.currency)


class PackagePut(Body):
    name: Text | None = Field(default=None, description="Default: the id.")
    credits: PositiveCredits
    bonus_credits: Credits = Field(default=0, description="Given on top of `credits`.")
    price: MoneyIn
    popular: bool = False
    best_value: bool = False
    active: bool = Field(default=True, description="For sale; an inactive pack is kept.")
    sort_order: SortOrder = 0
    stripe_price_id: ProviderId | None = Field(
        default=None,
        description="A Stripe price to sell the pack as; default: the price given here.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Starter",
                    "credits": 10000,
                    "bonus_credits": 1000,
                    "price": {"amount": 999, "currency": "usd"},
                    "popular": True,
                    "sort_order": 1,
                }
            ]
        }
    )


class PackageOut(BaseModel):
    id: str
    name: str
    credits: int
    bonus_credits: int
    total_credits: int = Field(description="`credits` + `bonus_credits`: what a buyer gets.")
    price: MoneyOut
    popular: bool
    best_value: bool
    active: bool
    sort_order: int
    stripe_price_id: str | None

    @classmethod
    def of(cls, p: Package) -> PackageOut:
        return cls(
            id=p.id,
            name=p.name,
            credits=p.credits,
            bonus_credits=p.bonus_credits,
            total_credits=p.total_credits,
            price=MoneyOut.of(p.price),
            popular=p.popular,
            best_value=p.best_value,
            active=p.active,
            sort_order=p.sort_order,
            stripe_price_id=p.stripe_price_id,
        )


class BoostCreate(Body):
    """The three boost packs (`boost-half`, `boost-single`, `boost-double`) derived from a
    base: half the credits for half the price, the same with 10 % more credits, twice both
    with 15 % more."""

    price: MoneyIn = Field(description="The price of the base credits.")
    base_credits: Annotated[StrictInt, Field(ge=2, le=MAX_CREDITS), Whole] | None = Field(
        default=None, description="Default: the allowance of the smallest limited plan."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"price": {"amount": 1900, "currency": "usd"}, "base_credits": 20000}]
        }
    )


class CheckoutCreate(Body):
    package: Identifier = Field(description="The credit pack to buy.")
    ui_mode: UiModeName = Field(
        default="hosted",
        description="`hosted`: send the buyer to `url`; `embedded`: mount the provider's "
        "checkout in the page with `client_secret`; `elements`: the page's own payment form "
        "confirms a payment intent with `client_secret`.",
    )
    success_url: ReturnUrl | None = Field(
        default=None,
        description="Where the buyer returns after paying (the return URL of an embedded "
        "checkout); required but for `elements`.",
    )
    cancel_url: ReturnUrl | None = Field(
        default=None, description="Where a hosted checkout's buyer goes on cancelling."
    )
    save_payment_method: bool = Field(
        default=False, description="Keep the card for off-session auto-recharge."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "package": "starter",
                    "ui_mode": "hosted",
                    "success_url": "https://example.com/billing/done",
                    "cancel_url": "https://example.com/billing",
                },
                {"package": "starter", "ui_mode": "elements", "save_payment_method": True},
            ]
        }
    )


class CheckoutOut(BaseModel):
    purchase_id: str
    session_id: str = Field(description="The checkout session's id, or the payment intent's.")
    ui_mode: str
    url: str | None = Field(description="`hosted`: where to send the buyer.")
    client_secret: str | None = Field(description="`embedded` and `elements`: for the page.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "purchase_id": "pur_01J…",
                    "session_id": "cs_test_…",
                    "ui_mode": "hosted",
                    "url": "https://checkout.stripe.com/c/pay/cs_test_…",
                    "client_secret": None,
                }
            ]
        }
    )

    @classmethod
    def of(cls, c: Checkout) -> CheckoutOut:
        return cls(
            purchase_id=c.purchase_id,
            session_id=c.session_id,
            ui_mode=c.ui_mode.value,
            url=c.url,
            client_secret=c.client_secret,
        )


class PurchaseOut(BaseModel):
    id: str
    account: str
    package: str
    kind: str = Field(description="`checkout`, `auto_recharge` or `external` (a payment link).")
    status: str = Field(description="`pending`, `paid`, `fulfilled`, `failed` or `refunded`.")
    credits: int = Field(description="The credits sold, bonus included.")
    bonus_credits: int
    price: MoneyOut
    provider: str
    created_at: datetime
    session_id: str | None
    payment_intent_id: str | None
    amount_paid: int = Field(description="Minor units.")
    amount_refunded: int = Field(description="Minor units.")
    credits_clawed_back: int
    clawback_debt: int = Field(
        description="Clawed-back credits that no credits of the account covered: its balance "
        "is below zero by them until new credits repay them."
    )
    credits_unrecovered: int = Field(
        description="Clawed-back credits that were spent already, recorded as owed (the "
        "`debt` refund shortfall) and not taken from the balance."
    )
    failure_reason: str | None
    paid_at: datetime | None
    fulfilled_at: datetime | None
    transaction_id: str | None = Field(description="The ledger transaction that credited it.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "pur_01J…",
                    "account": "acme",
                    "package": "starter",
                    "kind": "checkout",
                    "status": "fulfilled",
                    "credits": 11000,
                    "bonus_credits": 1000,
                    "price": {"amount": 999, "currency": "usd"},
                    "provider": "stripe",
                    "created_at": "2026-03-10T12:00:00Z",
                    "session_id": "cs_test_…",
                    "payment_intent_id": "pi_…",
                    "amount_paid": 999,
                    "amount_refunded": 0,
                    "credits_clawed_back": 0,
                    "clawback_debt": 0,
                    "credits_unrecovered": 0,
                    "failure_reason": None,
                    "paid_at": "2026-03-10T12:01:00Z",
                    "fulfilled_at": "2026-03-10T12:01:00Z",
                    "transaction_id": "txn_01J…",
                }
            ]
        }
    )

    @classmethod
    def of(cls, p: Purchase) -> PurchaseOut:
        return cls(
            id=p.id,
            account=p.account_id,
            package=p.package_id,
            kind=p.kind.value,
            status=p.status.value,
            credits=p.credits,
            bonus_credits=p.bonus_credits,
            price=MoneyOut.of(p.price),
            provider=p.provider,
            created_at=p.created_at,
            session_id=p.session_id,
            payment_intent_id=p.payment_intent_id,
            amount_paid=p.amount_paid,
            amount_refunded=p.amount_refunded,
            credits_clawed_back=p.credits_clawed_back,
            clawback_debt=p.clawback_debt,
            credits_unrecovered=p.credits_unrecovered,
            failure_reason=p.failure_reason,
            paid_at=p.paid_at,
            fulfilled_at=p.fulfilled_at,
            transaction_id=p.transaction_id,
        )


class PurchaseRefund(Body):
    amount: MinorUnits | None = Field(
        default=None, description="Minor units to refund; default: all that is left."
    )
    reason: Reason | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"amount": 500}, {}]})


class AutoRechargePut(Body):
    enabled: bool
    threshold: Credits = Field(
        default=0, description="Recharge when the available credits fall below this."
    )
    package: Identifier | None = Field(default=None, description="The pack bought each time.")
    payment_method: ProviderId | None = Field(
        default=None, description="The saved payment method charged off-session (`pm_…`)."
    )
    monthly_cap: MinorUnits | None = Field(
        default=None,
        description="The most charged a calendar month (UTC), in the package's currency's "
        "minor units; null: no cap.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "threshold": 1000,
                    "package": "starter",
                    "payment_method": "pm_1Q…",
                    "monthly_cap": 5000,
                },
                {"enabled": False},
            ]
        }
    )


class AutoRechargeOut(BaseModel):
    account: str
    enabled: bool
    threshold: int
    package: str | None
    payment_method: str | None
    monthly_cap: int | None
    consecutive_failures: int
    disabled_reason: str | None = Field(description="Why it was turned off, if it was.")
    pending_purchase_id: str | None = Field(description="The recharge in flight, if any.")
    retry_at: datetime | None = Field(description="After a failure: no recharge before then.")

    @classmethod
    def of(cls, a: AutoRecharge) -> AutoRechargeOut:
        return cls(
            account=a.account_id,
            enabled=a.enabled,
            threshold=a.threshold,
            package=a.package_id,
            payment_method=a.payment_method,
            monthly_cap=a.monthly_cap,
            consecutive_failures=a.consecutive_failures,
            disabled_reason=a.disabled_reason,
            pending_purchase_id=a.pending_purchase_id,
            retry_at=a.retry_at,
        )


class PaymentEventOut(BaseModel):
    id: str
    provider: str
    type: str
    status: str = Field(
        description="`received` (to apply), `applied`, `ignored` (nothing to do) or "
        "`flagged` (changed nothing: a person should look at `note`)."
    )
    note: str | None
    purchase_id: str | None
    received_at: datetime
    handled_at: datetime | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> PaymentEventOut:
        return cls(
            id=row["id"],
            provider=row["provider"],
            type=row["type"],
            status=row["status"],
            note=row["note"],
            purchase_id=row["purchase_id"],
            received_at=row["received_at"],
            handled_at=row["handled_at"],
        )


class WebhookReceived(BaseModel):
    received: Literal[True] = True
    duplicate: bool = Field(description="The event was received before; nothing changed.")


STRIPE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Stripe event, exactly as Stripe sent it (the signature covers the "
    "raw bytes).",
    "required": ["id", "type", "data"],
    "properties": {
        "id": {"type": "string", "pattern": NO_NUL},
        "type": {"type": "string"},
        "data": {"type": "object"},
    },
    "examples": [
        {
            "id": "evt_1Q…",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_test_…", "object": "checkout.session"}},
        }
    ],
}
