"""Selling credits: credit packs, checkout, purchases and their refunds, auto-recharge,
and the payment events received."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from creditmeter.api.auth import AccountReader, Admin, Caller, Meter, Superadmin, actor
from creditmeter.api.errors import Forbidden
from creditmeter.api.schemas.common import IdempotencyKey, Page, errors
from creditmeter.api.schemas.payments import (
    AutoRechargeOut,
    AutoRechargePut,
    BoostCreate,
    CheckoutCreate,
    CheckoutOut,
    PackageOut,
    PackagePut,
    PaymentEventOut,
    PaymentEventStatus,
    PurchaseOut,
    PurchaseRefund,
)
from creditmeter.core.errors import NotFound
from creditmeter.core.identifiers import IDENTIFIER_PATTERN
from creditmeter.core.keys import Role
from creditmeter.core.payments import Purchase
from creditmeter.meter import CreditMeter

router = APIRouter(tags=["payments"])

Id = Annotated[
    str, Path(pattern=IDENTIFIER_PATTERN, description="1 to 255 letters, digits and . _ : @ + = -")
]
PurchaseId = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="`pur_…`")]


def _purchase_of(meter: CreditMeter, account_id: str, purchase_id: str) -> Purchase:
    """The account's purchase; another account's is not found, as if it did not exist."""
    purchase = meter.purchase(purchase_id)
    if purchase.account_id != account_id:
        raise NotFound("purchase", purchase_id)
    return purchase


# Credit packs.


@router.get("/v1/packages", responses=errors(401, 403, 422))
def list_packages(
    meter: Meter,
    key: Caller,
    include_inactive: Annotated[
        bool, Query(description="Also packs not for sale (admin and above).")
    ] = False,
) -> Page[PackageOut]:
    """The credit packs for sale, in their sort order."""
    if include_inactive and not key.at_least(Role.ADMIN):
        raise Forbidden("listing inactive packages needs the admin role or above")
    packs = meter.packages(include_inactive=include_inactive)
    return Page(data=[PackageOut.of(p) for p in packs], next_cursor=None)


@router.put("/v1/packages/{package_id}", responses=errors(401, 403, 422))
def put_package(package_id: Id, body: PackagePut, meter: Meter, key: Superadmin) -> PackageOut:
    """Create a credit pack or replace it; purchases keep what they were sold."""
    pack = meter.put_package(
        package_id,
        name=body.name,
        credits=body.credits,
        bonus_credits=body.bonus_credits,
        price=body.price.amount,
        currency=body.price.currency,
        popular=body.popular,
        best_value=body.best_value,
        active=body.active,
        sort_order=body.sort_order,
        stripe_price_id=body.stripe_price_id,
        actor=actor(key),
    )
    return PackageOut.of(pack)


@router.post("/v1/packages/boost", responses=errors(401, 403, 422))
def add_boost_packages(body: BoostCreate, meter: Meter, key: Superadmin) -> Page[PackageOut]:
    """Write the three boost packs derived from a base (by default the smallest limited
    plan's allowance) and its price; writing them again replaces them."""
    packs = meter.add_boost_packages(
        body.price.amount, body.price.currency, base_credits=body.base_credits, actor=actor(key)
    )
    return Page(data=[PackageOut.of(p) for p in packs], next_cursor=None)


# Checkout and purchases.


@router.post(
    "/v1/accounts/{account_id}/checkout", responses=errors(401, 403, 404, 409, 422, 502, 503)
)
def checkout(
    account_id: str,
    body: CheckoutCreate,
    meter: Meter,
    key: AccountReader,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutOut:
    """Start buying a credit pack: a pending purchase and the payment provider's checkout
    for it. The account is credited once the provider's signed webhook confirms the
    payment, exactly once however often it is delivered. A server with no payment
    provider configured answers 503 `payments_not_configured` and starts nothing."""
    started = meter.checkout(
        account_id,
        body.package,
        ui_mode=body.ui_mode,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        save_payment_method=body.save_payment_method,
        idempotency_key=idempotency_key,
        by_account=key.role is Role.ACCOUNT,
    )
    return CheckoutOut.of(started)


@router.get("/v1/accounts/{account_id}/purchases", responses=errors(401, 404, 422))
def list_purchases(
    account_id: str,
    meter: Meter,
    _: AccountReader,
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=IDENTIFIER_PATTERN, description="`next_cursor` of the previous page."),
    ] = None,
) -> Page[PurchaseOut]:
    """The account's purchases, newest first."""
    found = meter.purchases(account_id, limit=limit, cursor=cursor)
    return Page(data=[PurchaseOut.of(p) for p in found.data], next_cursor=found.next_cursor)


@router.get("/v1/accounts/{account_id}/purchases/{purchase_id}", responses=errors(401, 404, 422))
def get_purchase(
    account_id: str, purchase_id: PurchaseId, meter: Meter, _: AccountReader
) -> PurchaseOut:
    """A purchase as it is now."""
    return PurchaseOut.of(_purchase_of(meter, account_id, purchase_id))


@router.post(
    "/v1/accounts/{account_id}/purchases/{purchase_id}/refund",
    responses=errors(401, 403, 404, 422, 502, 503),
)
def refund_purchase(
    account_id: str,
    purchase_id: PurchaseId,
    body: PurchaseRefund,
    meter: Meter,
    key: Superadmin,
    idempotency_key: IdempotencyKey = None,
) -> PurchaseOut:
    """Refund a fulfilled purchase through the payment provider, all that is left of it or
    `amount` minor units, and take its credits back pro rata: first its own unspent
    credits, then (per the `refund_shortfall` setting) other credits or debt."""
    _purchase_of(meter, account_id, purchase_id)
    return PurchaseOut.of(
        meter.refund_purchase(
            purchase_id,
            amount=body.amount,
            reason=body.reason,
            idempotency_key=idempotency_key,
            actor=actor(key),
        )
    )


# Auto-recharge.


@router.get("/v1/accounts/{account_id}/auto-recharge", responses=errors(401, 404))
def get_auto_recharge(account_id: str, meter: Meter, _: AccountReader) -> AutoRechargeOut:
    """The account's auto-recharge, with its failures and the recharge in flight."""
    return AutoRechargeOut.of(meter.auto_recharge(account_id))


@router.put("/v1/accounts/{account_id}/auto-recharge", responses=errors(401, 403, 404, 422, 503))
def put_auto_recharge(
    account_id: str, body: AutoRechargePut, meter: Meter, _: AccountReader
) -> AutoRechargeOut:
    """Buy `package` off-session with the saved `payment_method` whenever the available
    credits fall below `threshold`, one recharge at a time, at most `monthly_cap` a month.
    Setting it clears the count of failures; a recharge due at once starts at once."""
    meter.set_auto_recharge(
        account_id,
        enabled=body.enabled,
        threshold=body.threshold,
        package=body.package,
        payment_method=body.payment_method,
        monthly_cap=body.monthly_cap,
    )
    return AutoRechargeOut.of(meter.auto_recharge(account_id))


# Payment events.


@router.get("/v1/admin/payment-events", responses=errors(401, 403, 422))
def list_payment_events(
    meter: Meter,
    _: Admin,
    status: Annotated[PaymentEventStatus | None, Query(description="Only these.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> Page[PaymentEventOut]:
    """The payment provider's events as received, newest first, with what handling them
    did; a `flagged` one changed nothing and says why in `note`."""
    found = meter.payment_events(status=status, limit=limit)
    return Page(data=[PaymentEventOut.of(e) for e in found], next_cursor=None)
