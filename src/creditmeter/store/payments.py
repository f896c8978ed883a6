"""SQL for packages, purchases, auto-recharge settings and payment providers' events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.payments import (
    OPEN_STATUSES,
    AutoRecharge,
    Money,
    Package,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
)
from creditmeter.core.types import AccountId
from creditmeter.store.tables import auto_recharges, packages, payment_events, purchases

# Packages.


def _package(row: RowMapping) -> Package:
    return Package(
        id=row["id"],
        name=row["name"],
        credits=row["credits"],
        bonus_credits=row["bonus_credits"],
        price=Money(row["price_amount"], row["currency"]),
        popular=row["popular"],
        best_value=row["best_value"],
        active=row["active"],
        sort_order=row["sort_order"],
        stripe_price_id=row["stripe_price_id"],
    )


def get_package(conn: Connection, package_id: str) -> Package | None:
    row = conn.execute(sa.select(packages).where(packages.c.id == package_id)).mappings().first()
    return None if row is None else _package(row)


def list_packages(conn: Connection, *, include_inactive: bool) -> list[Package]:
    query = sa.select(packages).order_by(packages.c.sort_order, packages.c.id)
    if not include_inactive:
        query = query.where(packages.c.active.is_(True))
    return [_package(r) for r in conn.execute(query).mappings()]


def put_package(conn: Connection, p: Package, at: datetime) -> None:
    values = {
        "name": p.name,
        "credits": p.credits,
        "bonus_credits": p.bonus_credits,
        "price_amount": p.price.amount,
        "currency": p.price.currency,
        "popular": p.popular,
        "best_value": p.best_value,
        "active": p.active,
        "sort_order": p.sort_order,
        "stripe_price_id": p.stripe_price_id,
        "updated_at": at,
    }
    updated = conn.execute(packages.update().where(packages.c.id == p.id).values(**values))
    if updated.rowcount == 0:
        conn.execute(packages.insert().values(id=p.id, **values))


# Purchases.


def _purchase(row: RowMapping) -> Purchase:
    return Purchase(
        id=row["id"],
        account_id=row["account_id"],
        package_id=row["package_id"],
        kind=PurchaseKind(row["kind"]),
        status=PurchaseStatus(row["status"]),
        credits=row["credits"],
        bonus_credits=row["bonus_credits"],
        price=Money(row["price_amount"], row["currency"]),
        provider=row["provider"],
        created_at=row["created_at"],
        session_id=row["session_id"],
        payment_intent_id=row["payment_intent_id"],
        amount_paid=row["amount_paid"],
        amount_refunded=row["amount_refunded"],
        credits_clawed_back=row["credits_clawed_back"],
        clawback_debt=row["clawback_debt"],
        credits_unrecovered=row["credits_unrecovered"],
        failure_reason=row["failure_reason"],
        paid_at=row["paid_at"],
        fulfilled_at=row["fulfilled_at"],
        transaction_id=row["transaction_id"],
    )


def _columns(p: Purchase) -> dict[str, Any]:
    return {
        "account_id": p.account_id,
        "package_id": p.package_id,
        "kind": p.kind.value,
        "status": p.status.value,
        "credits": p.credits,
        "bonus_credits": p.bonus_credits,
        "price_amount": p.price.amount,
        "currency": p.price.currency,
        "provider": p.provider,
        "created_at": p.created_at,
        "session_id": p.session_id,
        "payment_intent_id": p.payment_intent_id,
        "amount_paid": p.amount_paid,
        "amount_refunded": p.amount_refunded,
        "credits_clawed_back": p.credits_clawed_back,
        "clawback_debt": p.clawback_debt,
        "credits_unrecovered": p.credits_unrecovered,
        "failure_reason": p.failure_reason,
        "paid_at": p.paid_at,
        "fulfilled_at": p.fulfilled_at,
        "transaction_id": p.transaction_id,
    }


def insert_purchase(conn: Connection, p: Purchase) -> None:
    conn.execute(purchases.insert().values(id=p.id, **_columns(p)))


def save_purchase(conn: Connection, before: Purchase, after: Purchase) -> bool:
    """Write ``after`` if the stored purchase is still ``before`` in status and refunds (a
    conditional update); ``False`` if another writer changed it first."""
    result = conn.execute(
        purchases.update()
        .where(
            purchases.c.id == before.id,
            purchases.c.status == before.status.value,
            purchases.c.amount_refunded == before.amount_refunded,
        )
        .values(**_columns(after))
    )
    return result.rowcount == 1


def get_purchase(conn: Connection, purchase_id: str) -> Purchase | None:
    query = sa.select(purchases).where(purchases.c.id == purchase_id)
    row = conn.execute(query).mappings().first()
    return None if row is None else _purchase(row)


def find_purchase(
    conn: Connection, *, session_id: str | None = None, payment_intent_id: str | None = None
) -> Purchase | None:
    """The purchase of a provider's checkout session or payment intent."""
    conditions = []
    if session_id:
        conditions.append(purchases.c.session_id == session_id)
    if payment_intent_id:
        conditions.append(purchases.c.payment_intent_id == payment_intent_id)
    if not conditions:
        return None
    row = conn.execute(sa.select(purchases).where(sa.or_(*conditions))).mappings().first()
    return None if row is None else _purchase(row)


def set_provider_ids(
    conn: Connection, purchase_id: str, *, session_id: str | None, payment_intent_id: str | None
) -> None:
    values = {"session_id": session_id}
    if payment_intent_id is not None:
        values["payment_intent_id"] = payment_intent_id
    conn.execute(purchases.update().where(purchases.c.id == purchase_id).values(**values))


def list_purchases(
    conn: Connection, account_id: AccountId, *, before: str | None, limit: int
) -> list[Purchase]:
    """The account's purchases, newest first; ``before`` is the id of the last one seen."""
    query = (
        sa.select(purchases)
        .where(purchases.c.account_id == account_id)
        .order_by(purchases.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(purchases.c.id < before)
    return [_purchase(r) for r in conn.execute(query).mappings()]


def recharged_since(conn: Connection, account_id: AccountId, since: datetime) -> list[Money]:
    """What auto-recharge has charged, or is charging, the account since ``since``."""
    query = sa.select(purchases.c.price_amount, purchases.c.currency).where(
        purchases.c.account_id == account_id,
        purchases.c.kind == PurchaseKind.AUTO_RECHARGE.value,
        purchases.c.created_at >= since,
        purchases.c.status.in_(
            [s.value for s in (*OPEN_STATUSES, PurchaseStatus.FULFILLED, PurchaseStatus.REFUNDED)]
        ),
    )
    return [Money(r.price_amount, r.currency) for r in conn.execute(query)]


# Auto-recharge.


def _auto_recharge(row: RowMapping) -> AutoRecharge:
    return AutoRecharge(
        account_id=row["account_id"],
        enabled=row["enabled"],
        threshold=row["threshold"],
        package_id=row["package_id"],
        payment_method=row["payment_method"],
        monthly_cap=row["monthly_cap"],
        consecutive_failures=row["consecutive_failures"],
        disabled_reason=row["disabled_reason"],
        pending_purchase_id=row["pending_purchase_id"],
        retry_at=row["retry_at"],
    )


def get_auto_recharge(conn: Connection, account_id: AccountId) -> AutoRecharge | None:
    query = sa.select(auto_recharges).where(auto_recharges.c.account_id == account_id)
    row = conn.execute(query).mappings().first()
    return None if row is None else _auto_recharge(row)


def put_auto_recharge(conn: Connection, a: AutoRecharge, at: datetime) -> None:
    values = {
        "enabled": a.enabled,
        "threshold": a.threshold,
        "package_id": a.package_id,
        "payment_method": a.payment_method,
        "monthly_cap": a.monthly_cap,
        "consecutive_failures": a.consecutive_failures,
        "disabled_reason": a.disabled_reason,
        "pending_purchase_id": a.pending_purchase_id,
        "retry_at": a.retry_at,
        "updated_at": at,
    }
    updated = conn.execute(
        auto_recharges.update().where(auto_recharges.c.account_id == a.account_id).values(values)
    )
    if updated.rowcount == 0:
        conn.execute(auto_recharges.insert().values(account_id=a.account_id, **values))


# Payment providers' events.


def insert_event(
    conn: Connection, event_id: str, provider: str, kind: str, payload: str, at: datetime
) -> bool:
    """Store an event; ``False`` if one with this id is stored already."""
    exists = conn.execute(
        sa.select(payment_events.c.id).where(payment_events.c.id == event_id)
    ).first()
    if exists is not None:
        return False
    conn.execute(
        payment_events.insert().values(
            id=event_id,
            provider=provider,
            type=kind,
            payload=payload,
            status="received",
            received_at=at,
        )
    )
    return True


def get_event(conn: Connection, event_id: str, *, lock: bool = False) -> RowMapping | None:
    query = sa.select(payment_events).where(payment_events.c.id == event_id)
    if lock:
        query = query.with_for_update()
    return conn.execute(query).mappings().first()


def finish_event(
    conn: Connection,
    event_id: str,
    status: str,
    *,
    note: str | None,
    purchase_id: str | None,
    at: datetime,
) -> None:
    conn.execute(
        payment_events.update()
        .where(payment_events.c.id == event_id)
        .values(status=status, note=note, purchase_id=purchase_id, handled_at=at)
    )


def list_events(
    conn: Connection, *, statuses: Sequence[str] = (), limit: int = 100
) -> list[dict[str, Any]]:
    query = (
        sa.select(
            payment_events.c.id,
            payment_events.c.provider,
            payment_events.c.type,
            payment_events.c.status,
            payment_events.c.note,
            payment_events.c.purchase_id,
            payment_events.c.received_at,
            payment_events.c.handled_at,
        )
        .order_by(payment_events.c.received_at.desc(), payment_events.c.id)
        .limit(limit)
    )
    if statuses:
        query = query.where(payment_events.c.status.in_(list(statuses)))
    return [dict(r) for r in conn.execute(query).mappings()]
