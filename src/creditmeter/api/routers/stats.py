"""The admin overview and breakdowns, account search, and usage charts (docs/stats.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from creditmeter.api.auth import AccountReader, Admin, Meter
from creditmeter.api.schemas.common import errors
from creditmeter.api.schemas.ledger import Time
from creditmeter.api.schemas.stats import (
    AccountSearchOut,
    AccountSummaryOut,
    BreakdownOut,
    BreakdownsOut,
    DailyUsagesOut,
    StatsOut,
)
from creditmeter.core.stats import Level
from creditmeter.core.types import AccountStatus

router = APIRouter(prefix="/v1", tags=["stats"])

Since = Annotated[Time, Query(description="From this time on (inclusive), ISO 8601 with a zone.")]
Until = Annotated[Time, Query(description="Before this time (exclusive), ISO 8601 with a zone.")]


@router.get("/admin/stats", responses=errors(401, 403, 422))
def get_stats(
    meter: Meter,
    _: Admin,
    since: Since,
    until: Until,
    currency: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z]{3}$", description="Revenue in this currency only."),
    ] = None,
) -> StatsOut:
    """Credits issued and consumed, billable credits against the providers' cost and the
    margin, revenue by currency net of refunds, accounts and balances, top consumers, and
    usage by model and feature, over `[since, until)`."""
    return StatsOut.of(meter.stats(since=since, until=until, currency=currency))


@router.get("/admin/stats/models", responses=errors(401, 403, 422))
def get_model_stats(meter: Meter, _: Admin, since: Since, until: Until) -> BreakdownsOut:
    """Usage over `[since, until)` by model, with its cost and margin."""
    rows = meter.model_stats(since=since, until=until)
    return BreakdownsOut(data=[BreakdownOut.of(r) for r in rows])


@router.get("/admin/stats/features", responses=errors(401, 403, 422))
def get_feature_stats(meter: Meter, _: Admin, since: Since, until: Until) -> BreakdownsOut:
    """Usage over `[since, until)` by feature, with its cost and margin."""
    rows = meter.feature_stats(since=since, until=until)
    return BreakdownsOut(data=[BreakdownOut.of(r) for r in rows])


@router.get("/admin/accounts", responses=errors(401, 403, 422))
def search_accounts(
    meter: Meter,
    _: Admin,
    q: Annotated[
        str | None, Query(max_length=255, description="A part of the id or the name.")
    ] = None,
    plan: Annotated[str | None, Query(max_length=255)] = None,
    status: AccountStatus | None = None,
    level: Level | None = None,
    sort: Literal["id", "name", "plan", "status", "created_at", "available"] = "id",
    order: Literal["asc", "desc"] = "asc",
    cursor: Annotated[
        str | None, Query(max_length=1024, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AccountSearchOut:
    """Accounts found by id or name, filtered by plan, status and balance level, sorted
    (then by id), a page at a time; the cursor holds for the same sort and order."""
    page = meter.search_accounts(
        query=q,
        plan=plan,
        status=None if status is None else status.value,
        level=None if level is None else level.value,
        sort=sort,
        descending=order == "desc",
        after=cursor,
        limit=limit,
    )
    return AccountSearchOut(
        data=[AccountSummaryOut.of(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.get("/accounts/{account_id}/usage/daily", responses=errors(401, 404, 422))
def daily_usage(
    account_id: str,
    meter: Meter,
    _: AccountReader,
    since: Since,
    until: Until,
    by: Literal["feature", "model", "member"] = "feature",
) -> DailyUsagesOut:
    """Billable credits per UTC day and feature, model or member, over `[since, until)`:
    the usage chart's data."""
    return DailyUsagesOut.of(meter.daily_usage(account_id, since=since, until=until, by=by))


@router.get("/admin/usage/daily", responses=errors(401, 403, 422))
def every_account_daily_usage(
    meter: Meter,
    _: Admin,
    since: Since,
    until: Until,
    by: Literal["feature", "model", "member"] = "feature",
) -> DailyUsagesOut:
    """Every account's billable credits per UTC day and feature, model or member, over
    `[since, until)`: the admin overview's chart."""
    return DailyUsagesOut.of(meter.daily_usage(None, since=since, until=until, by=by))
