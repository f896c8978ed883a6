"""SQL for usage records and their summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.records import UsageGroup, UsageRecord
from creditmeter.core.types import MAX_PERIOD_USAGE, AccountId, UsageId
from creditmeter.core.usage import UsageEvent
from creditmeter.store import _statements
from creditmeter.store.tables import unlimited_usage, usage_daily, usage_records

GroupBy = Literal["day", "week", "month", "feature", "model", "member"]
GROUPINGS: tuple[GroupBy, ...] = ("day", "week", "month", "feature", "model", "member")


@dataclass(frozen=True)
class NewUsage:
    """A usage record to store, with what the record itself does not carry."""

    record: UsageRecord
    pool: str
    provider_cost: Decimal | None
    transaction_id: str | None
    event: UsageEvent | None = None
    """A one-step charge's usage: its fields that the record does not carry are stored as
    given, each in the column of its name."""


_INSERT = _statements.Statement(usage_records.insert())
_AS_GIVEN = tuple(
    f.name
    for f in fields(UsageEvent)
    if f.name in usage_records.c
    and f.name not in {"account_id", "credits", "model", "member", "metadata", "provider_cost"}
)
"""A usage's fields stored as the request gave them: all those with a column of their name
but the ones the record carries as the charge settled them."""
_ADD_DAILY = _statements.Statement(
    sa.text(
        "INSERT INTO usage_daily (day, account_id, feature_key, model, events, credits,"
        " consumed, refunded, cost_dollars, cost_fraction, without_cost)"
        " VALUES (:day, :account_id, :feature_key, :model, :events, :credits, :consumed, 0,"
        " :cost_dollars, :cost_fraction, :without_cost)"
        " ON CONFLICT (day, account_id, feature_key, model) DO UPDATE SET"
        " events = usage_daily.events + excluded.events,"
        " credits = usage_daily.credits + excluded.credits,"
        " consumed = usage_daily.consumed + excluded.consumed,"
        " cost_dollars = usage_daily.cost_dollars + excluded.cost_dollars,"
        " cost_fraction = usage_daily.cost_fraction + excluded.cost_fraction,"
        " without_cost = usage_daily.without_cost + excluded.without_cost"
    )
)
COST_UNIT = Decimal("1e-10")
"""Provider costs are stored to ten places; the daily sums count them in these units."""
UNITS_A_DOLLAR = 10**10


def cost_parts(cost: Decimal | None) -> tuple[int, int]:
    """``cost`` (≥ 0) as whole dollars and units of 1e-10 USD of the rest, rounded as the
    stored cost is."""
    if cost is None:
        return 0, 0
    return divmod(int(cost.quantize(COST_UNIT, ROUND_HALF_UP).scaleb(10)), UNITS_A_DOLLAR)


def day_of(at: datetime) -> str:
    """The UTC day of a time (aware, in UTC, as the library keeps times)."""
    return at.astimezone(UTC).date().isoformat()


def _add_daily(conn: Connection, new: Sequence[NewUsage]) -> None:
    """Add the usage to its day's sums (one upsert a day, account, feature and model)."""
    sums: dict[tuple[str, str, str, str], list[int]] = {}
    for n in new:
        r = n.record
        key = (day_of(r.created_at), r.account_id, r.feature, r.model or "")
        found = sums.setdefault(key, [0, 0, 0, 0, 0, 0])
        dollars, fraction = cost_parts(n.provider_cost)
        found[0] += 1
        found[1] += r.credits
        found[2] += r.charged + r.debited
        found[3] += dollars
        found[4] += fraction
        found[5] += n.provider_cost is None
    _statements.run_many(
        conn,
        _ADD_DAILY,
        [
            {
                "day": day,
                "account_id": account_id,
                "feature_key": feature,
                "model": model,
                "events": events,
                "credits": credits,
                "consumed": consumed,
                "cost_dollars": dollars,
                "cost_fraction": fraction,
                "without_cost": without,
            }
            for (day, account_id, feature, model), (
                events,
                credits,
                consumed,
                dollars,
                fraction,
                without,
            ) in sums.items()
        ],
    )


def insert_many(conn: Connection, new: Sequence[NewUsage]) -> None:
    _add_daily(conn, new)
    _statements.run_many(
        conn,
        _INSERT,
        [
            {
                "id": n.record.id,
                "account_id": n.record.account_id,
                "feature_key": n.record.feature,
                "feature_version": n.record.feature_version,
                "pool": n.pool,
                "model": n.record.model,
                "member": n.record.member,
                "quantities": dict(n.record.quantities),
                "provider_cost": n.provider_cost,
                "credits": n.record.credits,
                "charged": n.record.charged,
                "debited": n.record.debited,
                "uncollected": n.record.uncollected,
                "refunded": n.record.refunded,
                "unlimited": n.record.unlimited,
                "unknown_model": n.record.unknown_model,
                "price_book_version": n.record.price_book_version,
                "success": n.record.success,
                "hold_id": n.record.hold_id,
                "transaction_id": n.transaction_id,
                "metadata": dict(n.record.metadata),
                "created_at": n.record.created_at,
            }
            | {name: None if n.event is None else getattr(n.event, name) for name in _AS_GIVEN}
            for n in new
        ],
    )


def _record(row: RowMapping) -> UsageRecord:
    return UsageRecord(
        id=row["id"],
        account_id=row["account_id"],
        feature=row["feature_key"],
        feature_version=row["feature_version"],
        model=row["model"],
        member=row["member"],
        quantities=row["quantities"],
        credits=row["credits"],
        charged=row["charged"],
        debited=row["debited"],
        uncollected=row["uncollected"],
        refunded=row["refunded"],
        unlimited=row["unlimited"],
        success=row["success"],
        hold_id=row["hold_id"],
        created_at=row["created_at"],
        metadata=row["metadata"],
        unknown_model=row["unknown_model"],
        price_book_version=row["price_book_version"],
        provider_cost=row["provider_cost"],
    )


def get(conn: Connection, usage_id: UsageId) -> UsageRecord | None:
    row = (
        conn.execute(sa.select(usage_records).where(usage_records.c.id == usage_id))
        .mappings()
        .first()
    )
    return None if row is None else _record(row)


def add_refunded(conn: Connection, usage_id: UsageId, credits: int) -> None:
    u = usage_records.c
    result = conn.execute(
        usage_records.update()
        .where(u.id == usage_id, u.refunded + credits <= u.charged + u.debited)
        .values(refunded=u.refunded + credits)
    )
    if result.rowcount != 1:
        raise RuntimeError(f"usage {usage_id} cannot be refunded by {credits}")
    record = get(conn, usage_id)
    assert record is not None
    d = usage_daily.c
    conn.execute(
        usage_daily.update()
        .where(
            d.day == day_of(record.created_at),
            d.account_id == record.account_id,
            d.feature_key == record.feature,
            d.model == (record.model or ""),
        )
        .values(refunded=d.refunded + credits)
    )


def in_window(
    conn: Connection, since: datetime, until: datetime, account_id: AccountId | None
) -> list[UsageRecord]:
    """Every account's usage records (or one account's) from ``since`` until ``until``."""
    u = usage_records.c
    query = sa.select(usage_records).where(u.created_at >= since, u.created_at < until)
    if account_id is not None:
        query = query.where(u.account_id == account_id)
    query = query.order_by(u.created_at, u.id)
    return [_record(r) for r in conn.execute(query).mappings()]


def _filtered(
    account_id: AccountId,
    feature: str | None,
    member: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[sa.ColumnElement[bool]]:
    u = usage_records.c
    where = [u.account_id == account_id]
    if feature is not None:
        where.append(u.feature_key == feature)
    if member is not None:
        where.append(u.member == member)
    if since is not None:
        where.append(u.created_at >= since)
    if until is not None:
        where.append(u.created_at < until)
    return where


def page(
    conn: Connection,
    account_id: AccountId,
    *,
    feature: str | None = None,
    member: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, UsageId] | None = None,
    limit: int,
) -> list[UsageRecord]:
    u = usage_records.c
    query = sa.select(usage_records).where(*_filtered(account_id, feature, member, since, until))
    if before is not None:
        at, usage_id = before
        query = query.where(sa.or_(u.created_at < at, sa.and_(u.created_at == at, u.id < usage_id)))
    query = query.order_by(u.created_at.desc(), u.id.desc()).limit(limit)
    return [_record(r) for r in conn.execute(query).mappings()]


def _bucket(dialect: str, group_by: GroupBy) -> sa.ColumnElement[Any]:
    u = usage_records.c
    match group_by:
        case "feature":
            return u.feature_key
        case "model":
            return sa.func.coalesce(u.model, "")
        case "member":
            return sa.func.coalesce(u.member, "")
    if dialect == "sqlite":
        # UTC datetimes are stored as "YYYY-MM-DD HH:MM:SS[.ffffff]" text.
        if group_by == "week":  # the Monday on or before the day
            return sa.func.date(u.created_at, "-6 days", "weekday 1")
        return sa.func.strftime("%Y-%m-01" if group_by == "month" else "%Y-%m-%d", u.created_at)
    truncated = sa.func.date_trunc(group_by, sa.func.timezone("UTC", u.created_at))
    return sa.func.to_char(truncated, "YYYY-MM-DD")


def summary(
    conn: Connection,
    dialect: str,
    account_id: AccountId,
    group_by: GroupBy,
    *,
    feature: str | None = None,
    member: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[UsageGroup]:
    u = usage_records.c
    bucket = _bucket(dialect, group_by).label("bucket")
    query = (
        sa.select(
            bucket,
            sa.func.count().label("n"),
            sa.func.sum(u.credits).label("credits"),
            sa.func.sum(u.charged + u.debited - u.refunded).label("charged"),
        )
        .where(*_filtered(account_id, feature, member, since, until))
        .group_by(bucket)
        .order_by(bucket)
    )
    return [
        UsageGroup(key=r.bucket, count=r.n, credits=int(r.credits), charged=int(r.charged))
        for r in conn.execute(query)
    ]


_UNLIMITED_ROW = (
    unlimited_usage.c.account_id == sa.bindparam("the_account_id"),
    unlimited_usage.c.pool == sa.bindparam("the_pool"),
    unlimited_usage.c.period_start == sa.bindparam("the_period_start"),
)
_ADD_UNLIMITED = (
    unlimited_usage.update()
    .where(*_UNLIMITED_ROW, unlimited_usage.c.credits <= sa.bindparam("ceiling"))
    .values(credits=unlimited_usage.c.credits + sa.bindparam("more"))
)
_HAS_UNLIMITED = sa.select(sa.literal(1)).where(*_UNLIMITED_ROW)


def add_unlimited(
    conn: Connection, account_id: AccountId, pool: str, period_start: datetime, credits: int
) -> bool:
    """Count credits used on an unlimited allowance (the caller holds the account lock);
    ``False``, counting nothing, if the period's count would pass ``MAX_PERIOD_USAGE``.
    The bound is in the statement: SQLite would turn a sum past 64 bits into a float."""
    if credits > MAX_PERIOD_USAGE:
        return False
    params = {
        "the_account_id": account_id,
        "the_pool": pool,
        "the_period_start": period_start,
        "more": credits,
        "ceiling": MAX_PERIOD_USAGE - credits,
    }
    if conn.execute(_ADD_UNLIMITED, params).rowcount:
        return True
    if conn.execute(_HAS_UNLIMITED, params).first() is not None:
        return False
    conn.execute(
        unlimited_usage.insert().values(
            account_id=account_id, pool=pool, period_start=period_start, credits=credits
        )
    )
    return True


def unlimited_used(
    conn: Connection, account_id: AccountId, period_start: datetime
) -> dict[str, int]:
    """Credits used on unlimited allowances in the period, by the feature's pool."""
    query = sa.select(unlimited_usage.c.pool, unlimited_usage.c.credits).where(
        unlimited_usage.c.account_id == account_id,
        unlimited_usage.c.period_start == period_start,
    )
    return {r.pool: r.credits for r in conn.execute(query)}
