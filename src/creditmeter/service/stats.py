"""The admin overview, the usage breakdowns, account search, usage charts and forecasts:
reads that sum the store's figures and price them with the settings (docs/stats.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from sqlalchemy.engine import Connection

from creditmeter.core import stats as core
from creditmeter.core.errors import InvalidRequest
from creditmeter.core.settings import Settings
from creditmeter.core.stats import (
    AccountPage,
    AccountSummary,
    CreditsIssued,
    DailyUsage,
    FeatureStats,
    Level,
    ModelStats,
    Revenue,
    SystemStats,
    TopAccount,
    UsageBreakdown,
)
from creditmeter.core.types import AccountStatus, GrantSource
from creditmeter.service.queries import instant
from creditmeter.store import stats as store

MAX_SEARCH_PAGE = 200
MAX_RANGE = timedelta(days=3660)
"""The longest date range a stats query takes (ten years)."""

_GRANTED = {GrantSource.BONUS, GrantSource.PROMOTIONAL, GrantSource.ADMIN}
_PURCHASED = {GrantSource.PURCHASE, GrantSource.AUTO_RECHARGE}


def date_range(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """``[since, until)`` in UTC; refused unless ``since`` comes before ``until``."""
    start, end = instant(since, "since"), instant(until, "until")
    if start >= end:
        raise InvalidRequest("since must be before until")
    if end - start > MAX_RANGE:
        raise InvalidRequest("the date range is longer than ten years")
    return start, end


def last_days(now: datetime, days: int) -> tuple[datetime, datetime]:
    """``(now - days, now]`` as a half-open range: what was recorded at ``now`` counts."""
    tick = timedelta(microseconds=1)
    return now - timedelta(days=days) + tick, now + tick


def currency_of(currency: str | None) -> str | None:
    if currency is None:
        return None
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise InvalidRequest("currency must be a three-letter ISO 4217 code")
    return currency.lower()


def system_stats(
    conn: Connection,
    dialect: str,
    settings: Settings,
    since: datetime,
    until: datetime,
    currency: str | None = None,
) -> SystemStats:
    since, until = date_range(since, until)
    wanted = currency_of(currency)
    groups = store.usage_groups(conn, dialect, since, until)
    total = _summed("", (g.sums for g in groups))
    by_model = _grouped(groups, _model)
    by_feature = _grouped(groups, _feature)
    by_account = _grouped(groups, _account)
    top = sorted(by_account.values(), key=lambda s: (-s.consumed, s.key))[: core.TOP_ACCOUNTS]
    top = [s for s in top if s.consumed > 0]
    names = store.names(conn, [s.key for s in top])
    active_since = until - timedelta(days=core.ACTIVE_DAYS)
    recent = (
        by_account
        if active_since == since
        else _grouped(store.usage_groups(conn, dialect, active_since, until), _account)
    )
    active = sum(1 for s in recent.values() if s.events)
    billable_usd = core.usd_of(total.billable, settings)
    margin = core.tidy(billable_usd - total.cost_usd)
    by_source = store.issued(conn, since, until)
    balances = store.balances(
        conn, settings.low_balance_threshold, settings.critical_balance_threshold
    )
    return SystemStats(
        since=since,
        until=until,
        issued=CreditsIssued(
            allowance=by_source.get(GrantSource.ALLOWANCE, 0),
            purchased=sum(by_source.get(s, 0) for s in _PURCHASED),
            granted=sum(by_source.get(s, 0) for s in _GRANTED),
            refunded=by_source.get(GrantSource.REFUND, 0),
            voided=store.voided(conn, since, until),
        ),
        consumed=total.consumed,
        billable_credits=total.billable,
        billable_usd=billable_usd,
        provider_cost_usd=core.tidy(total.cost_usd),
        margin_usd=margin,
        margin_ratio=core.margin_ratio(billable_usd, margin),
        events=total.events,
        events_without_cost=total.without_cost,
        revenue=tuple(
            Revenue(r.currency, r.purchases, r.gross, r.refunded)
            for r in store.revenue(conn, since, until, wanted)
        ),
        accounts=balances.accounts,
        active_accounts=active,
        average_balance=(
            (Decimal(balances.available) / balances.accounts).quantize(Decimal("0.01"))
            if balances.accounts
            else Decimal("0.00")
        ),
        low_accounts=balances.low,
        critical_accounts=balances.critical,
        top_accounts=tuple(TopAccount(s.key, names.get(s.key, s.key), s.consumed) for s in top),
        models=tuple(_breakdown(ModelStats, s, settings) for _, s in sorted(by_model.items())),
        features=tuple(
            _breakdown(FeatureStats, s, settings) for _, s in sorted(by_feature.items())
        ),
    )


def _summed(key: str, sums: Iterable[store.UsageSums]) -> store.UsageSums:
    events = billable = consumed = without = 0
    cost = Decimal(0).scaleb(-store.COST_SCALE)
    for s in sums:
        events += s.events
        billable += s.billable
        consumed += s.consumed
        cost += s.cost_usd
        without += s.without_cost
    return store.UsageSums(key, events, billable, consumed, cost, without)


def _grouped(
    groups: list[store.UsageGroup], key: Callable[[store.UsageGroup], str]
) -> dict[str, store.UsageSums]:
    parts: dict[str, list[store.UsageSums]] = defaultdict(list)
    for g in groups:
        parts[key(g)].append(g.sums)
    return {k: _summed(k, sums) for k, sums in parts.items()}


def _model(g: store.UsageGroup) -> str:
    return g.model


def _feature(g: store.UsageGroup) -> str:
    return g.feature


def _account(g: store.UsageGroup) -> str:
    return g.account_id


def model_stats(
    conn: Connection, dialect: str, settings: Settings, since: datetime, until: datetime
) -> list[ModelStats]:
    since, until = date_range(since, until)
    groups = _grouped(store.usage_groups(conn, dialect, since, until), _model)
    return [_breakdown(ModelStats, s, settings) for _, s in sorted(groups.items())]


def feature_stats(
    conn: Connection, dialect: str, settings: Settings, since: datetime, until: datetime
) -> list[FeatureStats]:
    since, until = date_range(since, until)
    groups = _grouped(store.usage_groups(conn, dialect, since, until), _feature)
    return [_breakdown(FeatureStats, s, settings) for _, s in sorted(groups.items())]


B = TypeVar("B", bound=UsageBreakdown)


def _breakdown(kind: type[B], sums: store.UsageSums, settings: Settings) -> B:
    billable_usd = core.usd_of(sums.billable, settings)
    margin = core.tidy(billable_usd - sums.cost_usd)
    return kind(
        key=sums.key,
        events=sums.events,
        credits=sums.billable,
        billable_usd=billable_usd,
        provider_cost_usd=core.tidy(sums.cost_usd),
        margin_usd=margin,
        margin_ratio=core.margin_ratio(billable_usd, margin),
    )


def _level_bounds(level: str | None, settings: Settings) -> tuple[int | None, int | None] | None:
    if level is None:
        return None
    try:
        wanted = Level(level)
    except ValueError:
        raise InvalidRequest(f"level must be one of {', '.join(Level)}") from None
    low, critical = settings.low_balance_threshold, settings.critical_balance_threshold
    if wanted is Level.CRITICAL:
        return None, critical
    if wanted is Level.LOW:
        return critical, low
    return max(low, critical), None


def search_accounts(
    conn: Connection,
    settings: Settings,
    now: datetime,
    *,
    query: str | None,
    plan: str | None,
    status: str | None,
    level: str | None,
    sort: str,
    descending: bool,
    after: str | None,
    limit: int,
) -> AccountPage:
    if sort not in store.SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(store.SORTS)}")
    if status is not None and status not in set(AccountStatus):
        raise InvalidRequest(f"status must be one of {', '.join(AccountStatus)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_PAGE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_SEARCH_PAGE}")
    found = store.search(
        conn,
        query=query or None,
        plan=plan,
        status=status,
        level_bounds=_level_bounds(level, settings),
        sort=sort,
        descending=descending,
        after=after,
        limit=limit + 1,
    )
    more = len(found) > limit
    found = found[:limit]
    used = store.consumed_by(conn, [f.id for f in found], *last_days(now, core.ACTIVE_DAYS))
    items = [
        AccountSummary(
            id=f.id,
            name=f.name,
            plan=f.plan,
            status=AccountStatus(f.status),
            available=f.available,
            level=core.level_of(f.available, settings),
            created_at=f.created_at,
            credits_used_30d=used.get(f.id, 0),
        )
        for f in found
    ]
    cursor = None
    if more:
        last = found[-1]
        cursor = store.encode_position(sort, store.sort_value(last, sort), last.id)
    return AccountPage(items=items, next_cursor=cursor)


def daily_usage(
    conn: Connection,
    dialect: str,
    account_id: str | None,
    since: datetime,
    until: datetime,
    by: str,
) -> list[DailyUsage]:
    if by not in store.DAILY_KEYS:
        raise InvalidRequest(f"by must be one of {', '.join(store.DAILY_KEYS)}")
    since, until = date_range(since, until)
    return [
        DailyUsage(day, key, credits)
        for day, key, credits in store.daily(conn, dialect, account_id, since, until, by)
    ]


def forecast(conn: Connection, account_id: str, available: int, now: datetime) -> core.Forecast:
    days = core.FORECAST_DAYS
    consumed = store.consumed_by_account(conn, account_id, *last_days(now, days))
    return core.forecast(account_id, available, consumed, days, now)
