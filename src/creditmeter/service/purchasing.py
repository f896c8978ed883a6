"""Buying credits across the payment provider and the ledger: checkout, refund and
auto-recharge.

The provider is called between units of work, never inside one: no account stays locked
while a payment service answers. Each step is safe to repeat: the provider's calls are
idempotent by purchase (or by refunded total), and the ledger's steps by the purchase's
status under its account's lock.
"""

from __future__ import annotations

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import InvalidRequest, NotFound
from creditmeter.core.payments import (
    Checkout,
    PaymentDeclined,
    PaymentError,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    UiMode,
)
from creditmeter.core.settings import Settings
from creditmeter.payments.provider import CheckoutRequest, PaymentProvider
from creditmeter.service import audit, purchases
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.purchases import Outcome
from creditmeter.service.unit_of_work import IdempotencyKey, UnitOfWork, UnitsOfWork, replay
from creditmeter.store import accounts
from creditmeter.store import payments as payments_store


def checkout(
    units: UnitsOfWork,
    provider: PaymentProvider,
    account_id: str,
    package_id: str,
    *,
    mode: UiMode,
    success_url: str | None,
    cancel_url: str | None,
    save_payment_method: bool,
    key: IdempotencyKey[Purchase] | None,
) -> Checkout:
    """A pending purchase of the package, then the provider's checkout for it."""

    def start(uow: UnitOfWork) -> Purchase:
        return purchases.start(
            uow.conn,
            uow.now,
            account_id,
            package_id,
            kind=PurchaseKind.CHECKOUT,
            provider=provider.name,
        )

    # A replayed key returns its purchase: the provider's call below is idempotent by it.
    purchase = units.run(start, key)
    with units.db.read() as conn:
        pack = purchases.get_package(conn, purchase.package_id)
    request = CheckoutRequest(
        purchase=purchase,
        package=pack,
        customer_id=customer(units, provider, purchase.account_id),
        ui_mode=mode,
        success_url=success_url,
        cancel_url=cancel_url,
        save_payment_method=save_payment_method,
    )
    try:
        started = provider.create_checkout(request)
    except PaymentError as error:
        fail(units, purchase.id, error.message)
        raise
    units.run(
        lambda uow: payments_store.set_provider_ids(
            uow.conn,
            purchase.id,
            session_id=started.session_id,
            payment_intent_id=started.payment_intent_id,
        )
    )
    return Checkout(
        purchase_id=purchase.id,
        session_id=started.session_id,
        ui_mode=mode,
        url=started.url,
        client_secret=started.client_secret,
    )


def refund(
    units: UnitsOfWork,
    provider: PaymentProvider,
    purchase_id: str,
    amount: int | None,
    reason: str | None,
    key: IdempotencyKey[Purchase] | None,
    actor: Actor,
) -> Purchase:
    """Refund a fulfilled purchase (all that is left, or ``amount``) through the
    provider, then claw its credits back pro rata under its account's lock."""
    if key is not None:
        with units.db.read() as conn:
            first = replay(conn, key)
        if first is not None:
            return first
    purchase = get(units, purchase_id)
    if purchase.status is not PurchaseStatus.FULFILLED:
        raise InvalidRequest(f"purchase {purchase_id} is {purchase.status.value}")
    left = purchase.amount_paid - purchase.amount_refunded
    amount = left if amount is None else amount
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= left:
        raise InvalidRequest(f"amount must be 1 to {left} minor units")
    total = purchase.amount_refunded + amount
    # Concurrent refunds to the same total (or under the same key) are one refund.
    refund_key = f"refund:{purchase_id}:{key.key if key is not None else total}"
    provider.refund(purchase, amount, idempotency_key=refund_key)
    refunded = amount

    def claw_back(account: LockedAccount, settings: Settings) -> Purchase:
        outcome = purchases.claw_back(
            account, settings, current(account, purchase_id), total, reason=reason
        )
        if outcome.status == "applied":
            details = {"amount": refunded, "currency": purchase.price.currency, "reason": reason}
            audit.record(
                account.conn,
                account.now,
                actor,
                Action.PURCHASE_REFUNDED,
                account_id=account.id,
                subject_id=purchase_id,
                details=details,
            )
        return current(account, purchase_id)

    return units.on_account(purchase.account_id, claw_back, key)


def recharge(units: UnitsOfWork, provider: PaymentProvider, purchase_id: str) -> None:
    """Charge an auto-recharge's saved card off-session and credit it, or fail the
    purchase (which counts the failure)."""
    purchase = get(units, purchase_id)
    if purchase.status is not PurchaseStatus.PENDING:
        return
    with units.db.read() as conn:
        config = payments_store.get_auto_recharge(conn, purchase.account_id)
    if config is None or not config.enabled or config.payment_method is None:
        fail(units, purchase_id, "auto-recharge was disabled before it ran")
        return
    customer_id = customer(units, provider, purchase.account_id)
    try:
        intent = provider.charge_off_session(purchase, customer_id, config.payment_method)
    except PaymentDeclined as declined:
        fail(units, purchase_id, declined.message, declined.payment_intent_id)
        return
    except PaymentError as refused:  # e.g. a payment method not the customer's
        fail(units, purchase_id, refused.message)
        return
    units.on_account(
        purchase.account_id,
        lambda account, _: purchases.fulfil(
            account,
            current(account, purchase_id),
            purchase.price,
            session_id=None,
            payment_intent_id=intent,
        ),
    )


def fail(
    units: UnitsOfWork, purchase_id: str, reason: str, payment_intent_id: str | None = None
) -> None:
    """Fail a pending purchase (recording the provider's intent, if it made one) under its
    account's lock."""

    def failed(account: LockedAccount, settings: Settings) -> Outcome:
        found = current(account, purchase_id)
        if payment_intent_id is not None and found.payment_intent_id is None:
            payments_store.set_provider_ids(
                account.conn,
                purchase_id,
                session_id=found.session_id,
                payment_intent_id=payment_intent_id,
            )
            found = current(account, purchase_id)
        return purchases.fail(account, settings, found, reason)

    units.on_account(get(units, purchase_id).account_id, failed)


def customer(units: UnitsOfWork, provider: PaymentProvider, account_id: str) -> str:
    """The account's customer at the payment provider, made on first need."""
    with units.db.read() as conn:
        row = accounts.get(conn, account_id)
    if row is None:
        raise NotFound("account", account_id)
    if row.payment_customer_id is not None:
        return row.payment_customer_id
    made = provider.create_customer(account_id, row.account.name)
    return units.run(lambda uow: accounts.claim_payment_customer(uow.conn, account_id, made))


def get(units: UnitsOfWork, purchase_id: str) -> Purchase:
    with units.db.read() as conn:
        found = payments_store.get_purchase(conn, purchase_id)
    if found is None:
        raise NotFound("purchase", purchase_id)
    return found


def current(account: LockedAccount, purchase_id: str) -> Purchase:
    """A purchase as it is under its account's lock."""
    found = payments_store.get_purchase(account.conn, purchase_id)
    assert found is not None
    return found
