"""SQL for accounts and members."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.grants import Grant
from creditmeter.core.records import Account
from creditmeter.core.types import AccountId, AccountStatus, Credits
from creditmeter.store import _statements, idempotency
from creditmeter.store import grants as grants_store
from creditmeter.store.grants import FOR_ACCOUNT_AS_STORED, FOR_ACCOUNTS_AS_STORED, grant_of
from creditmeter.store.idempotency import StoredResult
from creditmeter.store.tables import accounts, catalog_version, members, settings_versions


@dataclass
class AccountRow:
    """An account as stored, with its running totals."""

    account: Account
    balance: Credits
    held: Credits
    debt: Credits
    due_at: datetime
    payment_customer_id: str | None = None
    recharge_below: Credits | None = None
    """The auto-recharge threshold while auto-recharge is enabled."""
    balance_alert: int = 0
    """The balance level last told (:mod:`creditmeter.core.alerts`)."""
    allowance_alert: int = 0
    """The highest percentage of this period's allowance told, 0 for none."""
    settings_version: int | None = None
    """The version of the settings in force when the row was read (by :func:`get`)."""
    catalog_version: int | None = None
    """The version of the catalog (features and plans) when the row was read (by
    :func:`get`)."""

    @property
    def id(self) -> AccountId:
        return self.account.id

    @property
    def available(self) -> Credits:
        return self.balance - self.held


def _row(row: _statements.Row) -> AccountRow:
    return AccountRow(
        account=Account(
            id=row["id"],
            name=row["name"],
            plan=row["plan_key"],
            pending_plan=row["pending_plan_key"],
            status=AccountStatus(row["status"]),
            created_at=row["created_at"],
            period_start=row["period_start"],
            period_end=row["period_end"],
            overdraft_limit=row["overdraft_limit"],
            metadata=row["metadata"],
        ),
        balance=row["balance"],
        held=row["held"],
        debt=row["debt"],
        due_at=row["due_at"],
        payment_customer_id=row["payment_customer_id"],
        recharge_below=row["recharge_below"],
        balance_alert=row["balance_alert"],
        allowance_alert=row["allowance_alert"],
        settings_version=row.get("settings_version"),
        catalog_version=row.get("catalog_version"),
    )


# The versions of the settings and of the catalog come with the row, so that a use case
# knows without another round trip whether what it remembers of them is still in force.
_SETTINGS_VERSION = (
    sa.select(sa.func.coalesce(sa.func.max(settings_versions.c.version), 0))
    .scalar_subquery()
    .label("settings_version")
)
_CATALOG_VERSION = (
    sa.select(catalog_version.c.version)
    .where(catalog_version.c.id == 1)
    .scalar_subquery()
    .label("catalog_version")
)
_SELECT = sa.select(accounts, _SETTINGS_VERSION, _CATALOG_VERSION).where(
    accounts.c.id == sa.bindparam("account_id")
)
_GET = _statements.Statement(_SELECT)


def get(conn: Connection, account_id: AccountId) -> AccountRow | None:
    """The account, unlocked (see :func:`lock_with_grants` to change it)."""
    row = _statements.first(conn, _GET, {"account_id": account_id})
    return None if row is None else _row(row)


_LOCK = _statements.Statement(_SELECT.with_for_update())


def lock_with_grants(
    conn: Connection, account_id: AccountId
) -> tuple[AccountRow, list[Grant]] | None:
    """The account, locked, with the grants a use case loads (those of
    :func:`creditmeter.store.grants.for_account`), in one round trip on PostgreSQL. Two
    queries, not one join: the grants are read once the lock is taken, so they are as its
    last holder left them (a join would return them as they were before it waited)."""
    return lock_with_grants_and_key(conn, account_id, None)[0]


def lock_with_grants_and_key(
    conn: Connection, account_id: AccountId, idempotency_key: str | None
) -> tuple[tuple[AccountRow, list[Grant]] | None, StoredResult | None]:
    """:func:`lock_with_grants`, and what is stored under the operator's
    ``idempotency_key`` (if one is given), read once the lock is taken and in the same
    round trip: a retry that waited for the call it repeats finds that call's result."""
    params: dict[str, Any] = {"account_id": account_id}
    capped = {**params, "cap": grants_store.LOAD_CAP + 1}
    queries: list[_statements.Query] = [(_LOCK, params), (FOR_ACCOUNT_AS_STORED, capped)]
    if idempotency_key is not None:
        queries.append(idempotency.find_query(idempotency_key))
    locked, found, *key_rows = _statements.rows_each(conn, queries)
    stored = idempotency.stored_result(key_rows[0]) if key_rows else None
    if not locked:
        return None, stored
    return (_row(locked[0]), [grant_of(r) for r in found]), stored


_LOCK_MANY = _statements.Statement(
    sa.select(accounts, _SETTINGS_VERSION, _CATALOG_VERSION)
    .where(_statements.one_of(accounts.c.id, "account_ids"))
    .order_by(accounts.c.id)
    .with_for_update()
)


def lock_many_with_grants(
    conn: Connection, account_ids: Sequence[AccountId]
) -> dict[AccountId, tuple[AccountRow, list[Grant]]]:
    """:func:`lock_with_grants` for several accounts in one round trip on PostgreSQL,
    locked in the order of their ids (as every writer of several accounts locks them, so
    that none waits for another in a cycle); the ids of no account are left out."""
    return lock_many_with_grants_and_keys(conn, account_ids, ())[0]


def lock_many_with_grants_and_keys(
    conn: Connection, account_ids: Sequence[AccountId], idempotency_keys: Sequence[str]
) -> tuple[dict[AccountId, tuple[AccountRow, list[Grant]]], dict[str, StoredResult]]:
    """:func:`lock_many_with_grants`, and what is stored under the operator's
    ``idempotency_keys``, read once the locks are taken and in the same round trip (as
    :func:`lock_with_grants_and_key` reads one)."""
    params = {"account_ids": list(account_ids)}
    queries: list[_statements.Query] = [(_LOCK_MANY, params), (FOR_ACCOUNTS_AS_STORED, params)]
    if idempotency_keys:
        queries.append(idempotency.find_many_query(idempotency_keys))
    locked, found, *key_rows = _statements.rows_each(conn, queries)
    stored = idempotency.stored_results(key_rows[0]) if key_rows else {}
    loaded: dict[AccountId, list[Grant]] = {r["id"]: [] for r in locked}
    for r in found:
        # (An account made since the lock was taken is not in it: its grants are skipped.)
        if (theirs := loaded.get(r["account_id"])) is not None:
            theirs.append(grant_of(r))
    return {r["id"]: (_row(r), loaded[r["id"]]) for r in locked}, stored


def _totals(row: AccountRow) -> dict[str, Any]:
    return {
        "balance": row.balance,
        "held": row.held,
        "debt": row.debt,
        "due_at": row.due_at,
    }


def _fields(a: Account) -> dict[str, Any]:
    return {
        "name": a.name,
        "plan_key": a.plan,
        "pending_plan_key": a.pending_plan,
        "status": a.status.value,
        "period_start": a.period_start,
        "period_end": a.period_end,
        "overdraft_limit": a.overdraft_limit,
        "metadata": dict(a.metadata),
    }


_INSERT = accounts.insert()


def insert(conn: Connection, row: AccountRow) -> None:
    a = row.account
    conn.execute(
        _INSERT,
        {
            "id": a.id,
            "created_at": a.created_at,
            "payment_customer_id": row.payment_customer_id,
            "recharge_below": row.recharge_below,
            **_fields(a),
            **_totals(row),
        },
    )


_TOTALS = ("balance", "held", "debt", "due_at")
_SAVE_TOTALS = _statements.Statement(
    accounts.update()
    .where(accounts.c.id == sa.bindparam("account_id"))
    .values({name: sa.bindparam(f"new_{name}") for name in _TOTALS})
)


_SAVE = _statements.Statement(accounts.update().where(accounts.c.id == sa.bindparam("account_id")))


def save(conn: Connection, row: AccountRow, *, fields_changed: bool) -> None:
    """Write back the account's running totals, and its other fields if they changed."""
    if fields_changed:
        _statements.run(conn, _SAVE, {"account_id": row.id, **_fields(row.account), **_totals(row)})
    else:
        save_totals(conn, [row])


def save_totals(conn: Connection, rows: Sequence[AccountRow]) -> None:
    """Write back the running totals of accounts whose other fields did not change."""
    _statements.run_many(
        conn,
        _SAVE_TOTALS,
        [
            {"account_id": row.id, **{f"new_{name}": v for name, v in _totals(row).items()}}
            for row in rows
        ],
    )


_SET_ALERTS = _statements.Statement(
    accounts.update()
    .where(accounts.c.id == sa.bindparam("account_id"))
    .values(
        balance_alert=sa.bindparam("new_balance_alert"),
        allowance_alert=sa.bindparam("new_allowance_alert"),
    )
)


def save_alerts(conn: Connection, row: AccountRow) -> None:
    """Write back the threshold alerts last sent (only when they changed: a crossing)."""
    _statements.run(
        conn,
        _SET_ALERTS,
        {
            "account_id": row.id,
            "new_balance_alert": row.balance_alert,
            "new_allowance_alert": row.allowance_alert,
        },
    )


def list_all(conn: Connection, *, after: AccountId | None, limit: int) -> list[AccountRow]:
    query = sa.select(accounts).order_by(accounts.c.id).limit(limit)
    if after is not None:
        query = query.where(accounts.c.id > after)
    return [_row(r) for r in conn.execute(query).mappings()]


def ids_due(conn: Connection, at: datetime, limit: int) -> list[AccountId]:
    query = sa.select(accounts.c.id).where(accounts.c.due_at <= at).limit(limit)
    return list(conn.execute(query).scalars())


def upsert_member(
    conn: Connection, account_id: AccountId, member_id: str, name: str, at: datetime
) -> None:
    exists = conn.execute(
        sa.select(members.c.id).where(members.c.account_id == account_id, members.c.id == member_id)
    ).first()
    if exists:
        conn.execute(
            members.update()
            .where(members.c.account_id == account_id, members.c.id == member_id)
            .values(name=name)
        )
    else:
        conn.execute(
            members.insert().values(account_id=account_id, id=member_id, name=name, created_at=at)
        )


def list_members(conn: Connection, account_id: AccountId) -> list[dict[str, Any]]:
    query = (
        sa.select(members.c.id, members.c.name, members.c.created_at)
        .where(members.c.account_id == account_id)
        .order_by(members.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def set_recharge_below(conn: Connection, account_id: AccountId, threshold: Credits | None) -> None:
    conn.execute(
        accounts.update().where(accounts.c.id == account_id).values(recharge_below=threshold)
    )


def claim_payment_customer(conn: Connection, account_id: AccountId, customer_id: str) -> str:
    """Record the account's customer at the payment provider unless one is recorded
    already; the one recorded (first come, first kept)."""
    conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id, accounts.c.payment_customer_id.is_(None))
        .values(payment_customer_id=customer_id)
    )
    kept = conn.execute(
        sa.select(accounts.c.payment_customer_id).where(accounts.c.id == account_id)
    ).scalar_one()
    return str(kept)


def id_of_payment_customer(conn: Connection, customer_id: str) -> AccountId | None:
    query = sa.select(accounts.c.id).where(accounts.c.payment_customer_id == customer_id)
    found: AccountId | None = conn.execute(query).scalars().first()
    return found
