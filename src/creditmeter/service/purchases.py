"""Purchases: packages, starting a sale, fulfilment exactly once, failures, refunds'
clawback, and auto-recharge.

Every change to a purchase happens with its account locked, and is written with a
conditional update on the purchase's status, so two deliveries of the same payment (or
two different events for it) credit the account once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import AccountSuspended, InvalidRequest, NotFound
from creditmeter.core.grants import consumption_order, merge_draws, plan_draws
from creditmeter.core.identifiers import identifier
from creditmeter.core.ids import new_id
from creditmeter.core.payments import (
    OPEN_STATUSES,
    AutoRecharge,
    Money,
    Package,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    RefundShortfall,
    clawback_target,
)
from creditmeter.core.pricing import credit_amount
from creditmeter.core.records import Posting
from creditmeter.core.settings import Settings
from creditmeter.core.types import (
    ANY_POOL,
    AccountStatus,
    Credits,
    GrantSource,
    SystemAccount,
    TransactionType,
)
from creditmeter.service import audit
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.maintenance import repay_debt
from creditmeter.store import accounts, catalog, outbox
from creditmeter.store import payments as store
from creditmeter.store.errors import ConcurrentUpdate
from creditmeter.store.grants import Change as GrantChange

AUTO_RECHARGE_JOB = "auto_recharge"


@dataclass(frozen=True)
class Outcome:
    """What handling a payment event did: ``applied``, ``ignored`` (nothing to do, e.g.
    a repeat) or ``flagged`` (wrong; changed nothing; for a person to look at)."""

    status: str
    note: str
    purchase_id: str | None = None


def applied(note: str, purchase: Purchase) -> Outcome:
    return Outcome("applied", note, purchase.id)


def ignored(note: str, purchase: Purchase | None = None) -> Outcome:
    return Outcome("ignored", note, None if purchase is None else purchase.id)


def flagged(note: str, purchase: Purchase | None = None) -> Outcome:
    return Outcome("flagged", note, None if purchase is None else purchase.id)


# Packages.


def get_package(conn: Connection, package_id: str) -> Package:
    found = store.get_package(conn, package_id)
    if found is None:
        raise NotFound("package", package_id)
    return found


def put_package(conn: Connection, now: datetime, pack: Package, actor: Actor) -> None:
    store.put_package(conn, pack, now)
    details = {
        "name": pack.name,
        "credits": pack.credits,
        "bonus_credits": pack.bonus_credits,
        "price": {"amount": pack.price.amount, "currency": pack.price.currency},
        "popular": pack.popular,
        "best_value": pack.best_value,
        "active": pack.active,
        "sort_order": pack.sort_order,
        "stripe_price_id": pack.stripe_price_id,
    }
    audit.record(conn, now, actor, Action.PACKAGE_PUT, subject_id=pack.id, details=details)


def smallest_plan_allowance(conn: Connection) -> Credits:
    """The credits of the smallest plan with a limited allowance: what boost packs are
    derived from."""
    totals = [
        sum(limited.values())
        for plan in catalog.list_plans(conn)
        if (limited := plan.limited_allowances()) and sum(limited.values()) > 0
    ]
    if not totals:
        raise InvalidRequest("no plan has a limited allowance to derive boost packs from")
    return min(totals)


# Starting a sale.


def start(
    conn: Connection,
    now: datetime,
    account_id: str,
    package_id: str,
    *,
    kind: PurchaseKind,
    provider: str,
) -> Purchase:
    """A pending purchase of an active package by an active account."""
    row = accounts.get(conn, identifier(account_id, "an account id"))
    if row is None:
        raise NotFound("account", account_id)
    if row.account.status is not AccountStatus.ACTIVE:
        raise AccountSuspended(account_id, row.account.status.value)
    package = get_package(conn, identifier(package_id, "a package id"))
    if not package.active:
        raise InvalidRequest(f"package {package_id!r} is not for sale")
    purchase = Purchase(
        id=new_id("pur"),
        account_id=account_id,
        package_id=package.id,
        kind=kind,
        status=PurchaseStatus.PENDING,
        credits=package.total_credits,
        bonus_credits=package.bonus_credits,
        price=package.price,
        provider=provider,
        created_at=now,
    )
    store.insert_purchase(conn, purchase)
    return purchase


def locate(
    conn: Connection,
    *,
    purchase_id: str | None,
    session_id: str | None,
    payment_intent_id: str | None,
) -> Purchase | None:
    """The purchase a provider's event is about: named in its metadata, or found by the
    provider's session or payment intent."""
    if purchase_id:
        found = store.get_purchase(conn, purchase_id)
        if found is not None:
            return found
    return store.find_purchase(conn, session_id=session_id, payment_intent_id=payment_intent_id)


def start_external(
    conn: Connection,
    now: datetime,
    account_id: str,
    package_id: str,
    paid: Money,
    *,
    provider: str,
    session_id: str | None,
    payment_intent_id: str | None,
) -> Purchase | Outcome:
    """A purchase for a payment made outside creditmeter (a payment link) whose metadata
    names the account and the package; a flag if either is unknown or the amount is not
    the package's price."""
    row = accounts.get(conn, account_id)
    package = store.get_package(conn, package_id)
    if row is None:
        return flagged(f"the payment names account {account_id!r}, which does not exist")
    if package is None:
        return flagged(f"the payment names package {package_id!r}, which does not exist")
    if paid != package.price:
        return flagged(f"paid {paid}, package {package_id!r} costs {package.price}")
    purchase = Purchase(
        id=new_id("pur"),
        account_id=account_id,
        package_id=package.id,
        kind=PurchaseKind.EXTERNAL,
        status=PurchaseStatus.PENDING,
        credits=package.total_credits,
        bonus_credits=package.bonus_credits,
        price=package.price,
        provider=provider,
        created_at=now,
        session_id=session_id,
        payment_intent_id=payment_intent_id,
    )
    store.insert_purchase(conn, purchase)
    return purchase


# Fulfilment, failure and refunds: each with the purchase's account locked in ``account``.


def _save(account: LockedAccount, before: Purchase, after: Purchase) -> None:
    if not store.save_purchase(account.conn, before, after):
        raise ConcurrentUpdate(f"purchase {before.id} changed under this use case")


def fulfil(
    account: LockedAccount,
    purchase: Purchase,
    paid: Money,
    *,
    session_id: str | None,
    payment_intent_id: str | None,
) -> Outcome:
    """Credit a paid purchase, once; a payment of another amount is flagged, whenever it
    comes."""
    if paid != purchase.price:
        note = f"paid {paid}, the purchase costs {purchase.price}: not credited"
        if purchase.status is PurchaseStatus.PENDING:
            _save(
                account,
                purchase,
                replace(
                    purchase, status=PurchaseStatus.PAID, failure_reason=note, paid_at=account.now
                ),
            )
        return flagged(note, purchase)
    if purchase.status in (PurchaseStatus.FULFILLED, PurchaseStatus.REFUNDED):
        return ignored("the purchase is fulfilled already", purchase)
    source = (
        GrantSource.AUTO_RECHARGE
        if purchase.kind is PurchaseKind.AUTO_RECHARGE
        else GrantSource.PURCHASE
    )
    g = account.open_grant(source, pool=ANY_POOL, reference=f"purchase:{purchase.id}")
    bought = purchase.credits - purchase.bonus_credits
    txn = account.post(
        TransactionType.PURCHASE,
        [
            Posting(SystemAccount.ISSUANCE_PURCHASE.value, -bought),
            Posting(SystemAccount.ISSUANCE_BONUS.value, -purchase.bonus_credits),
            Posting(account.wallet, purchase.credits, g.id),
        ],
        {g.id: GrantChange(remaining=purchase.credits, amount=purchase.credits)},
        f"{purchase.credits} credits bought (package {purchase.package_id})",
        purchase_id=purchase.id,
        metadata={
            "package_id": purchase.package_id,
            "amount": paid.amount,
            "currency": paid.currency,
        },
    )
    repay_debt(account, [g.id])
    _save(
        account,
        purchase,
        replace(
            purchase,
            status=PurchaseStatus.FULFILLED,
            amount_paid=paid.amount,
            paid_at=purchase.paid_at or account.now,
            fulfilled_at=account.now,
            transaction_id=txn.id,
            session_id=purchase.session_id or session_id,
            payment_intent_id=purchase.payment_intent_id or payment_intent_id,
            failure_reason=None,
        ),
    )
    if purchase.kind is PurchaseKind.AUTO_RECHARGE:
        _recharge_ended(account, purchase, failure=None, settings=None)
    notify(
        account,
        "purchase.fulfilled",
        purchase,
        credits=purchase.credits,
        amount=paid.amount,
        currency=paid.currency,
    )
    return applied(f"{purchase.credits} credits credited", purchase)


def fail(account: LockedAccount, settings: Settings, purchase: Purchase, reason: str) -> Outcome:
    """A payment that did not go through: the purchase fails (an auto-recharge counts a
    failure); a purchase already paid or failed is left as it is."""
    if purchase.status is not PurchaseStatus.PENDING:
        return ignored(f"the purchase is {purchase.status.value} already", purchase)
    _save(account, purchase, replace(purchase, status=PurchaseStatus.FAILED, failure_reason=reason))
    if purchase.kind is PurchaseKind.AUTO_RECHARGE:
        _recharge_ended(account, purchase, failure=reason, settings=settings)
    notify(account, "purchase.failed", purchase, reason=reason)
    return applied(f"payment failed: {reason}", purchase)


def claw_back(
    account: LockedAccount,
    settings: Settings,
    purchase: Purchase,
    refunded_total: int,
    *,
    reason: str | None = None,
) -> Outcome:
    """Take back the credits that refunds of ``refunded_total`` minor units (all refunds
    of the purchase so far) pay for, pro rata; each refund once."""
    if purchase.status not in (PurchaseStatus.FULFILLED, PurchaseStatus.REFUNDED):
        if purchase.status in OPEN_STATUSES:
            note = "refunded before it was credited"
            _save(
                account,
                purchase,
                replace(purchase, status=PurchaseStatus.FAILED, failure_reason=note),
            )
            return applied(note, purchase)
        return ignored(f"the purchase is {purchase.status.value}: nothing to claw back", purchase)
    refunded_total = min(refunded_total, purchase.amount_paid)
    if refunded_total <= purchase.amount_refunded:
        return ignored("this refund is applied already", purchase)
    target = clawback_target(purchase.credits, purchase.amount_paid, refunded_total)
    owed = target - purchase.credits_clawed_back
    legs, changes, debt, unrecovered = _reversal_legs(account, settings, purchase, owed)
    taken = owed - unrecovered
    bonus = purchase.bonus_credits * taken // purchase.credits
    legs += [
        Posting(SystemAccount.ISSUANCE_PURCHASE.value, taken - bonus),
        Posting(SystemAccount.ISSUANCE_BONUS.value, bonus),
    ]
    account.post(
        TransactionType.REVERSAL,
        legs,
        changes,
        reason
        or f"{taken} credits taken back: {refunded_total - purchase.amount_refunded} "
        f"{purchase.price.currency} minor units refunded",
        purchase_id=purchase.id,
        metadata={"refunded_total": refunded_total, "debt": debt, "unrecovered": unrecovered},
    )
    whole = refunded_total >= purchase.amount_paid
    _save(
        account,
        purchase,
        replace(
            purchase,
            status=PurchaseStatus.REFUNDED if whole else purchase.status,
            amount_refunded=refunded_total,
            credits_clawed_back=target,
            clawback_debt=purchase.clawback_debt + debt,
            credits_unrecovered=purchase.credits_unrecovered + unrecovered,
        ),
    )
    notify(account, "purchase.refunded", purchase, credits=owed, debt=debt, unrecovered=unrecovered)
    return applied(
        f"{owed} credits clawed back ({debt} owed as debt, {unrecovered} recorded as owed)",
        purchase,
    )


def _reversal_legs(
    account: LockedAccount, settings: Settings, purchase: Purchase, owed: Credits
) -> tuple[list[Posting], dict[str, GrantChange], Credits, Credits]:
    """The account's side of a clawback, its debt and what is only recorded as owed: the
    purchase's own unspent credits first; the spent rest per ``refund_shortfall``."""
    own = [g for g in account.grants if g.reference == f"purchase:{purchase.id}"]
    draws, short = plan_draws(own, owed)
    debt = unrecovered = 0
    if short and settings.refund_shortfall is RefundShortfall.DEBT:
        unrecovered = short
    elif short:
        others = [g for g in consumption_order(account.grants, None, account.now) if g not in own]
        more, debt = plan_draws(others, short)
        draws += more
    merged = merge_draws(draws)
    legs = [Posting(account.wallet, -d.credits, d.grant_id) for d in merged]
    if debt:
        legs.append(Posting(account.wallet, -debt))
    changes = {d.grant_id: GrantChange(remaining=-d.credits) for d in merged}
    return legs, changes, debt, unrecovered


def notify(account: LockedAccount, topic: str, purchase: Purchase, **details: object) -> None:
    """An event for those who listen (outgoing webhooks, email), queued in the outbox
    with the change."""
    outbox.enqueue(
        account.conn,
        new_id("job"),
        f"event.{topic}",
        {"account_id": purchase.account_id, "purchase_id": purchase.id, **details},
        account.now,
    )


# Auto-recharge.


def configure_auto_recharge(
    account: LockedAccount,
    *,
    enabled: bool,
    threshold: object,
    package_id: str | None,
    payment_method: str | None,
    monthly_cap: object,
) -> AutoRecharge:
    threshold = credit_amount(threshold, "threshold")
    if monthly_cap is not None and (
        isinstance(monthly_cap, bool) or not isinstance(monthly_cap, int) or monthly_cap < 1
    ):
        raise InvalidRequest("monthly_cap must be a whole number of minor units ≥ 1, or null")
    if enabled and (package_id is None or not payment_method):
        raise InvalidRequest("auto-recharge needs a package and a saved payment method")
    if package_id is not None:
        package = get_package(account.conn, identifier(package_id, "a package id"))
        if enabled and not package.active:
            raise InvalidRequest(f"package {package_id!r} is not for sale")
        if monthly_cap is not None and enabled and package.price.amount > monthly_cap:
            raise InvalidRequest(
                f"the monthly cap {monthly_cap} is below the package's price {package.price}"
            )
    current = store.get_auto_recharge(account.conn, account.id)
    config = AutoRecharge(
        account_id=account.id,
        enabled=enabled,
        threshold=threshold,
        package_id=package_id,
        payment_method=payment_method or None,
        monthly_cap=monthly_cap if isinstance(monthly_cap, int) else None,
        pending_purchase_id=None if current is None else current.pending_purchase_id,
    )
    store.put_auto_recharge(account.conn, config, account.now)
    account.row.recharge_below = threshold if enabled else None
    accounts.set_recharge_below(account.conn, account.id, account.row.recharge_below)
    return config


def start_recharge_if_low(account: LockedAccount, settings: Settings, provider: str) -> bool:
    """Start one auto-recharge if the account is below its threshold, none is in flight,
    the last failure is far enough behind, and the monthly cap allows it: a pending
    purchase and a job that charges it, queued with the change that caused it; whether
    one was."""
    threshold = account.row.recharge_below
    if threshold is None or account.available >= threshold:
        return False
    config = store.get_auto_recharge(account.conn, account.id)
    if config is None or not config.enabled or config.pending_purchase_id is not None:
        return False
    if config.retry_at is not None and account.now < config.retry_at:
        return False
    assert config.package_id is not None
    package = get_package(account.conn, config.package_id)
    if config.monthly_cap is not None:
        month = account.now.astimezone(UTC).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        spent = sum(
            m.amount
            for m in store.recharged_since(account.conn, account.id, month)
            if m.currency == package.price.currency
        )
        if spent + package.price.amount > config.monthly_cap:
            return False
    purchase = Purchase(
        id=new_id("pur"),
        account_id=account.id,
        package_id=package.id,
        kind=PurchaseKind.AUTO_RECHARGE,
        status=PurchaseStatus.PENDING,
        credits=package.total_credits,
        bonus_credits=package.bonus_credits,
        price=package.price,
        provider=provider,
        created_at=account.now,
    )
    store.insert_purchase(account.conn, purchase)
    store.put_auto_recharge(
        account.conn, replace(config, pending_purchase_id=purchase.id), account.now
    )
    outbox.enqueue(
        account.conn,
        new_id("job"),
        AUTO_RECHARGE_JOB,
        {"purchase_id": purchase.id},
        account.now,
        dedupe_key=f"recharge:{purchase.id}",
    )
    return True


def _recharge_ended(
    account: LockedAccount, purchase: Purchase, *, failure: str | None, settings: Settings | None
) -> None:
    config = store.get_auto_recharge(account.conn, account.id)
    if config is None or config.pending_purchase_id != purchase.id:
        return
    config = replace(config, pending_purchase_id=None)
    if failure is None:
        config = replace(config, consecutive_failures=0, retry_at=None)
        price = {"amount": purchase.price.amount, "currency": purchase.price.currency}
        notify(account, "recharge.succeeded", purchase, credits=purchase.credits, price=price)
    else:
        assert settings is not None
        failures = config.consecutive_failures + 1
        config = replace(
            config,
            consecutive_failures=failures,
            retry_at=account.now + timedelta(seconds=settings.auto_recharge_retry_seconds),
        )
        if failures >= settings.auto_recharge_max_failures:
            reason = f"disabled after {failures} failed recharges; last: {failure}"
            config = replace(config, enabled=False, disabled_reason=reason)
            account.row.recharge_below = None
            accounts.set_recharge_below(account.conn, account.id, None)
        notify(
            account,
            "recharge.failed",
            purchase,
            reason=failure,
            consecutive_failures=failures,
            auto_recharge_disabled=not config.enabled,
        )
        if not config.enabled:
            notify(account, "auto_recharge.disabled", purchase, reason=config.disabled_reason)
    store.put_auto_recharge(account.conn, config, account.now)
