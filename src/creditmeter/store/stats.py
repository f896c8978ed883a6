"""SQL for the stats: sums over usage, grants, purchases and accounts.

Every account's usage is read from the daily sums (``usage_daily``, kept with each usage)
for whole UTC days, and from the records, through their index by time, for the parts of
days at the ends of a range; one account's from its records, through the index by account
and time (docs/stats.md).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.errors import InvalidRequest
from creditmeter.core.types import AccountId, Credits
from creditmeter.store.tables import (
    accounts,
    grants,
    ledger_transactions,
    postings,
    purchases,
    usage_daily,
    usage_records,
)

u = usage_records.c

CONSUMED = u.charged + u.debited - u.refunded
"""What usage drew from an account (its grants and its debt), net of usage refunds."""
BILLABLE = u.credits - u.refunded
"""What usage was priced at, unlimited allowances included, net of usage refunds."""
COST_SCALE = 10
"""Places of ``provider_cost`` (``ExactDecimal(20, 10)``)."""


def _cost_sums(dialect: str) -> list[sa.ColumnElement[Any]]:
    """The exact sum of provider costs, as whole dollars and 1e-10 USD units: SQLite keeps
    costs as text with ten places, and its ``SUM`` of text is a float."""
    cost = u.provider_cost
    if dialect == "sqlite":
        point = sa.func.instr(cost, ".")
        dollars = sa.cast(sa.func.substr(cost, 1, point - 1), sa.BigInteger)
        fraction = sa.cast(sa.func.substr(cost, point + 1), sa.BigInteger)
        return [
            sa.func.coalesce(sa.func.sum(dollars), 0).label("cost_dollars"),
            sa.func.coalesce(sa.func.sum(fraction), 0).label("cost_fraction"),
        ]
    return [
        sa.func.coalesce(sa.func.sum(cost), 0).label("cost_dollars"),
        sa.literal(0).label("cost_fraction"),
    ]


def _usd(dollars: object, fraction: object) -> Decimal:
    return Decimal(dollars) + Decimal(int(fraction)).scaleb(-COST_SCALE)  # type: ignore[arg-type, call-overload]


def _window(since: datetime, until: datetime) -> list[sa.ColumnElement[bool]]:
    return [u.created_at >= since, u.created_at < until]


@dataclass(frozen=True)
class UsageSums:
    key: str
    events: int
    billable: Credits
    consumed: Credits
    cost_usd: Decimal
    without_cost: int


@dataclass(frozen=True)
class UsageGroup:
    account_id: AccountId
    feature: str
    model: str
    sums: UsageSums


def usage_groups(
    conn: Connection, dialect: str, since: datetime, until: datetime
) -> list[UsageGroup]:
    """Every account's usage in ``[since, until)`` summed by account, feature and model:
    the whole UTC days from the daily sums, the parts of days at either end from the
    records themselves."""
    first, last = _whole_days(since, until)
    if first >= last:
        return _merged(groups_of_records(conn, dialect, since, until))
    parts = _groups_of_days(conn, first, last)
    parts += groups_of_records(conn, dialect, since, first)
    parts += groups_of_records(conn, dialect, last, until)
    return _merged(parts)


def _whole_days(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The first and the last midnight (UTC) of ``[since, until)``."""
    midnight = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight if midnight == since else midnight + timedelta(days=1)
    last = until.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return first, last


def _merged(parts: list[UsageGroup]) -> list[UsageGroup]:
    found: dict[tuple[str, str, str], UsageGroup] = {}
    for g in parts:
        key = (g.account_id, g.feature, g.model)
        seen = found.get(key)
        if seen is None:
            found[key] = g
            continue
        a, b = seen.sums, g.sums
        found[key] = UsageGroup(
            g.account_id,
            g.feature,
            g.model,
            UsageSums(
                key="",
                events=a.events + b.events,
                billable=a.billable + b.billable,
                consumed=a.consumed + b.consumed,
                cost_usd=a.cost_usd + b.cost_usd,
                without_cost=a.without_cost + b.without_cost,
            ),
        )
    return list(found.values())


def _groups_of_days(conn: Connection, first: datetime, last: datetime) -> list[UsageGroup]:
    d = usage_daily.c
    query = (
        sa.select(
            d.account_id,
            d.feature_key,
            d.model,
            sa.func.sum(d.events).label("events"),
            sa.func.sum(d.credits - d.refunded).label("billable"),
            sa.func.sum(d.consumed - d.refunded).label("consumed"),
            sa.func.sum(d.cost_dollars).label("cost_dollars"),
            sa.func.sum(d.cost_fraction).label("cost_fraction"),
            sa.func.sum(d.without_cost).label("without_cost"),
        )
        .where(d.day >= first.date().isoformat(), d.day < last.date().isoformat())
        .group_by(d.account_id, d.feature_key, d.model)
    )
    return _groups(conn.execute(query))


def groups_of_records(
    conn: Connection, dialect: str, since: datetime, until: datetime
) -> list[UsageGroup]:
    if since >= until:
        return []
    model = sa.func.coalesce(u.model, "")
    query = (
        sa.select(
            u.account_id,
            u.feature_key,
            model.label("model"),
            sa.func.count().label("events"),
            sa.func.sum(BILLABLE).label("billable"),
            sa.func.sum(CONSUMED).label("consumed"),
            *_cost_sums(dialect),
            sa.func.sum(sa.case((u.provider_cost.is_(None), 1), else_=0)).label("without_cost"),
        )
        .where(*_window(since, until))
        .group_by(u.account_id, u.feature_key, model)
    )
    return _groups(conn.execute(query))


def _groups(rows: Iterable[sa.Row[Any]]) -> list[UsageGroup]:
    """Rows of sums by account, feature and model, from the rollup or the records alike."""
    return [
        UsageGroup(
            r.account_id,
            r.feature_key,
            r.model,
            UsageSums(
                key="",
                events=int(r.events),
                billable=int(r.billable),
                consumed=int(r.consumed),
                cost_usd=_usd(r.cost_dollars, r.cost_fraction),
                without_cost=int(r.without_cost),
            ),
        )
        for r in rows
    ]


def names(conn: Connection, account_ids: Sequence[AccountId]) -> dict[AccountId, str]:
    if not account_ids:
        return {}
    query = sa.select(accounts.c.id, accounts.c.name).where(accounts.c.id.in_(account_ids))
    return {row.id: row.name for row in conn.execute(query)}


def issued(conn: Connection, since: datetime, until: datetime) -> dict[str, Credits]:
    """Credits of the grants created in ``[since, until)``, by source."""
    g = grants.c
    query = (
        sa.select(g.source, sa.func.sum(g.amount))
        .where(g.created_at >= since, g.created_at < until)
        .group_by(g.source)
    )
    return {source: int(total) for source, total in conn.execute(query)}


def voided(conn: Connection, since: datetime, until: datetime) -> Credits:
    """Credits that voids of grants in ``[since, until)`` took out of accounts."""
    g, p, t = grants.c, postings.c, ledger_transactions.c
    voided_grants = sa.select(g.id).where(g.voided_at >= since, g.voided_at < until)
    transactions = sa.select(p.transaction_id).where(p.grant_id.in_(voided_grants))
    query = sa.select(sa.func.coalesce(sa.func.sum(t.amount), 0)).where(
        t.type == "void", t.id.in_(transactions)
    )
    return -int(conn.execute(query).scalar_one())


@dataclass(frozen=True)
class RevenueSums:
    currency: str
    purchases: int
    gross: int
    refunded: int


def revenue(
    conn: Connection, since: datetime, until: datetime, currency: str | None
) -> list[RevenueSums]:
    """Money taken for purchases paid in ``[since, until)``, by currency, with what was
    refunded of those purchases."""
    p = purchases.c
    query = (
        sa.select(
            p.currency,
            sa.func.count().label("n"),
            sa.func.sum(p.amount_paid).label("gross"),
            sa.func.sum(p.amount_refunded).label("refunded"),
        )
        .where(p.paid_at >= since, p.paid_at < until, p.amount_paid > 0)
        .group_by(p.currency)
        .order_by(p.currency)
    )
    if currency is not None:
        query = query.where(p.currency == currency)
    return [
        RevenueSums(r.currency, int(r.n), int(r.gross), int(r.refunded))
        for r in conn.execute(query)
    ]


available_credits = accounts.c.balance - accounts.c.held


@dataclass(frozen=True)
class BalanceSums:
    accounts: int
    available: Credits
    low: int
    critical: int


def balances(conn: Connection, low: Credits, critical: Credits) -> BalanceSums:
    """Every account's available credits summed, and how many are at each level."""
    is_critical = available_credits <= critical
    is_low = sa.and_(available_credits > critical, available_credits <= low)
    query = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(available_credits), 0),
        sa.func.coalesce(sa.func.sum(sa.case((is_critical, 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((is_low, 1), else_=0)), 0),
    )
    n, total, n_critical, n_low = conn.execute(query).one()
    return BalanceSums(int(n), int(total), int(n_low), int(n_critical))


def day_of(dialect: str) -> sa.ColumnElement[Any]:
    """The UTC day of a usage record."""
    if dialect == "sqlite":  # stored as "YYYY-MM-DD HH:MM:SS.ffffff" UTC text
        return sa.func.substr(u.created_at, 1, 10)
    return sa.func.date(sa.func.timezone("UTC", u.created_at))


DAILY_KEYS = {
    "feature": u.feature_key,
    "model": sa.func.coalesce(u.model, ""),
    "member": sa.func.coalesce(u.member, ""),
}


def daily(
    conn: Connection,
    dialect: str,
    account_id: AccountId | None,
    since: datetime,
    until: datetime,
    by: str,
) -> list[tuple[date, str, Credits]]:
    """Billable credits per UTC day and ``by`` in ``[since, until)``: every account's by
    feature or model from the daily sums for whole days; else from the records."""
    first, last = _whole_days(since, until)
    if account_id is not None or by == "member" or first >= last:
        rows = _daily_of_records(conn, dialect, account_id, since, until, by)
    else:
        rows = _daily_of_records(conn, dialect, None, since, first, by)
        rows += _daily_of_days(conn, first, last, by)
        rows += _daily_of_records(conn, dialect, None, last, until, by)
    summed: dict[tuple[date, str], Credits] = {}
    for day, key, credits in rows:
        summed[day, key] = summed.get((day, key), 0) + credits
    return [(day, key, credits) for (day, key), credits in sorted(summed.items())]


def _daily_of_days(
    conn: Connection, first: datetime, last: datetime, by: str
) -> list[tuple[date, str, Credits]]:
    d = usage_daily.c
    key = (d.feature_key if by == "feature" else d.model).label("key")
    query = (
        sa.select(d.day, key, sa.func.sum(d.credits - d.refunded).label("credits"))
        .where(d.day >= first.date().isoformat(), d.day < last.date().isoformat())
        .group_by(d.day, key)
    )
    return [(date.fromisoformat(r.day), r.key, int(r.credits)) for r in conn.execute(query)]


def _daily_of_records(
    conn: Connection,
    dialect: str,
    account_id: AccountId | None,
    since: datetime,
    until: datetime,
    by: str,
) -> list[tuple[date, str, Credits]]:
    if since >= until:
        return []
    day = day_of(dialect).label("day")
    key = DAILY_KEYS[by].label("key")
    query = sa.select(day, key, sa.func.sum(BILLABLE).label("credits")).where(
        *_window(since, until)
    )
    if account_id is not None:
        query = query.where(u.account_id == account_id)
    query = query.group_by(day, key)
    return [
        (r.day if isinstance(r.day, date) else date.fromisoformat(r.day), r.key, int(r.credits))
        for r in conn.execute(query)
    ]


def consumed_by(
    conn: Connection, account_ids: Sequence[AccountId], since: datetime, until: datetime
) -> dict[AccountId, Credits]:
    """What each account's usage in ``[since, until)`` drew: a sum per account, each
    through the index by account and time (a page of accounts is a few of many)."""
    if not account_ids:
        return {}
    a = accounts.c
    used = (
        sa.select(sa.func.coalesce(sa.func.sum(CONSUMED), 0))
        .where(u.account_id == a.id, *_window(since, until))
        .scalar_subquery()
    )
    query = sa.select(a.id, used.label("used")).where(a.id.in_(account_ids))
    return {r.id: int(r.used) for r in conn.execute(query)}


def consumed_by_account(
    conn: Connection, account_id: AccountId, since: datetime, until: datetime
) -> Credits:
    query = sa.select(sa.func.coalesce(sa.func.sum(CONSUMED), 0)).where(
        u.account_id == account_id, *_window(since, until)
    )
    return int(conn.execute(query).scalar_one())


# Account search.

SORTS: dict[str, sa.ColumnElement[Any]] = {
    "id": accounts.c.id,
    "name": accounts.c.name,
    "plan": sa.func.coalesce(accounts.c.plan_key, ""),
    "status": accounts.c.status,
    "created_at": accounts.c.created_at,
    "available": available_credits,
}


@dataclass(frozen=True)
class Found:
    id: AccountId
    name: str
    plan: str | None
    status: str
    available: Credits
    created_at: datetime


def encode_position(sort: str, value: object, account_id: AccountId) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    text = json.dumps([sort, value, account_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_position(sort: str, cursor: str) -> tuple[object, AccountId]:
    try:
        named, value, account_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if named != sort or not isinstance(account_id, str):
            raise ValueError
        if sort == "created_at":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError
        elif sort == "available":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
        elif not isinstance(value, str):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidRequest("invalid cursor (it belongs to another sort, or is not one)") from None
    return value, account_id


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(
    conn: Connection,
    *,
    query: str | None,
    plan: str | None,
    status: str | None,
    level_bounds: tuple[Credits | None, Credits | None] | None,
    sort: str,
    descending: bool,
    after: str | None,
    limit: int,
) -> list[Found]:
    """Accounts matching the filters in ``sort`` order (then by id), from after the cursor;
    ``level_bounds`` is (above, at most) of the available credits."""
    a = accounts.c
    column = SORTS[sort]
    select = sa.select(
        a.id, a.name, a.plan_key, a.status, available_credits.label("available"), a.created_at
    )
    if query:
        pattern = f"%{_escaped(query.lower())}%"
        select = select.where(
            sa.or_(
                sa.func.lower(a.id).like(pattern, escape="\\"),
                sa.func.lower(a.name).like(pattern, escape="\\"),
            )
        )
    if plan is not None:
        select = select.where(a.plan_key == plan)
    if status is not None:
        select = select.where(a.status == status)
    if level_bounds is not None:
        above, at_most = level_bounds
        if above is not None:
            select = select.where(available_credits > above)
        if at_most is not None:
            select = select.where(available_credits <= at_most)
    if after is not None:
        value, account_id = _decode_position(sort, after)
        if descending:
            select = select.where(
                sa.or_(column < value, sa.and_(column == value, a.id < account_id))
            )
        else:
            select = select.where(
                sa.or_(column > value, sa.and_(column == value, a.id > account_id))
            )
    order = [column.desc(), a.id.desc()] if descending else [column, a.id]
    select = select.order_by(*order).limit(limit)
    return [
        Found(r.id, r.name, r.plan_key, r.status, int(r.available), r.created_at)
        for r in conn.execute(select)
    ]


def sort_value(found: Found, sort: str) -> object:
    if sort == "plan":
        return found.plan or ""
    return getattr(found, sort)
