"""Reads: balances, the ledger, usage and its summaries, CSV export."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Protocol, TypeVar

from sqlalchemy.engine import Connection

from creditmeter.core.errors import InvalidRequest
from creditmeter.core.grants import allowance_state
from creditmeter.core.pricing import pool_matches
from creditmeter.core.records import Balance, Page, PoolBalance, Transaction, UsageRecord
from creditmeter.core.settings import Settings, balance_warnings
from creditmeter.core.types import ANY_POOL, PURCHASED_SOURCES, TransactionType
from creditmeter.service import csv_export
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.maintenance import plan_of
from creditmeter.store import ledger, usage
from creditmeter.store.usage import GROUPINGS, GroupBy

MAX_PAGE = 1000


def balance(account: LockedAccount, settings: Settings) -> Balance:
    plan = plan_of(account)
    start = account.row.account.period_start
    free = account.free_by_pool()
    grants = account.period_allowances()
    unlimited_pools = [
        p for p in (plan.allowances if plan else {}) if plan and plan.is_unlimited(p)
    ]
    used_by_pool = usage.unlimited_used(account.conn, account.id, start) if unlimited_pools else {}

    def unlimited_used(pool: str) -> int | None:
        """Credits used on the unlimited allowance of ``pool`` (``*``: of every pool)."""
        if pool not in unlimited_pools:
            return None
        return sum(used_by_pool.values()) if pool == ANY_POOL else used_by_pool.get(pool, 0)

    allowance = allowance_state(grants, start, None, unlimited_used(ANY_POOL))
    pools = {
        pool: PoolBalance(
            available=sum(n for (p, _), n in free.items() if pool_matches(p, pool)),
            allowance=allowance_state(grants, start, pool, unlimited_used(pool)),
            unlimited=pool in unlimited_pools,
        )
        for pool in sorted(plan.allowances if plan is not None else ())
    }
    available = account.available
    return Balance(
        account_id=account.id,
        available=available,
        held=account.row.held,
        debt=account.row.debt,
        allowance=allowance,
        period_start=start,
        period_end=account.row.account.period_end,
        purchased_available=sum(n for (_, s), n in free.items() if s in PURCHASED_SOURCES),
        pools=pools,
        warnings=tuple(
            balance_warnings(settings, available, allowance, unlimited=ANY_POOL in unlimited_pools)
        ),
        status=account.row.account.status,
    )


def encode_cursor(at: datetime, item_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{item_id}".encode()).decode()


_ITEM_ID = re.compile(r"[a-z]+_[0-9A-Z]{26}")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The position a cursor made by :func:`encode_cursor` names; anything else is refused."""
    if cursor is None:
        return None
    try:
        at, item_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        position = instant(datetime.fromisoformat(at), "cursor")
    except (ValueError, UnicodeDecodeError, InvalidRequest):
        raise InvalidRequest("invalid cursor") from None
    if not _ITEM_ID.fullmatch(item_id):
        raise InvalidRequest("invalid cursor")
    return position, item_id


def instant(value: datetime, what: str) -> datetime:
    """``value`` in UTC; a time without a time zone, or outside what UTC can hold, is
    refused."""
    if value.tzinfo is None:
        raise InvalidRequest(f"{what} needs a time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest(f"{what} is out of range") from None


def bound(value: datetime | None, what: str) -> datetime | None:
    """An optional ``since``/``until`` bound, as :func:`instant` makes it."""
    return None if value is None else instant(value, what)


class _Listed(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


L = TypeVar("L", bound=_Listed)


def paged(
    fetch: Callable[[tuple[datetime, str] | None, int], list[L]], limit: int, cursor: str | None
) -> Page[L]:
    """One page, newest first, of what ``fetch(before, limit)`` lists; the cursor is the
    position of the page's last item."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
    rows = fetch(decode_cursor(cursor), limit + 1)
    if len(rows) <= limit:
        return Page(tuple(rows), None)
    rows = rows[:limit]
    return Page(tuple(rows), encode_cursor(rows[-1].created_at, rows[-1].id))


def transactions(
    conn: Connection,
    account_id: str,
    *,
    types: tuple[str, ...] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Transaction]:
    try:
        kinds = tuple(TransactionType(t) for t in types)
    except ValueError:
        known = ", ".join(t.value for t in TransactionType)
        raise InvalidRequest(f"type must be one of {known}") from None
    return paged(
        lambda before, n: ledger.page(
            conn,
            account_id,
            types=kinds,
            since=bound(since, "since"),
            until=bound(until, "until"),
            before=before,
            limit=n,
        ),
        limit,
        cursor,
    )


def usage_page(
    conn: Connection,
    account_id: str,
    *,
    feature: str | None = None,
    member: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[UsageRecord]:
    return paged(
        lambda before, n: usage.page(
            conn,
            account_id,
            feature=feature,
            member=member,
            since=bound(since, "since"),
            until=bound(until, "until"),
            before=before,
            limit=n,
        ),
        limit,
        cursor,
    )


def group_by(value: str) -> GroupBy:
    for grouping in GROUPINGS:
        if grouping == value:
            return grouping
    raise InvalidRequest(f"group_by must be one of {', '.join(GROUPINGS)}")


CSV_COLUMNS = (
    "id",
    "created_at",
    "type",
    "amount",
    "balance_before",
    "balance_after",
    "description",
    "usage_id",
    "hold_id",
)


def write_transactions_csv(rows: Iterator[Transaction], out: IO[str]) -> int:
    """Write transactions as CSV, one line each; returns how many were written."""
    writer = csv_export.Writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for t in rows:
        writer.writerow(
            [
                t.id,
                t.created_at.isoformat(),
                t.type.value,
                t.amount,
                t.balance_before,
                t.balance_after,
                t.description,
                t.usage_id or "",
                t.hold_id or "",
            ]
        )
        count += 1
    return count
