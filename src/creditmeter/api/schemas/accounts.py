"""Accounts and balances."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from creditmeter.api.schemas.common import Body, Credits, Identifier, Metadata, Text
from creditmeter.api.schemas.stats import ForecastOut
from creditmeter.core import records, stats
from creditmeter.core.errors import AllowanceState
from creditmeter.core.settings import BalanceWarning


class AccountCreate(Body):
    id: Identifier = Field(description="The host app's own id for the account.")
    name: Text | None = None
    plan: Identifier | None = None
    metadata: Metadata = Field(default_factory=dict)
    overdraft_limit: Credits = 0

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "acme", "name": "Acme Inc.", "plan": "pro"}]}
    )


class AccountChange(Body):
    name: Text | None = None
    status: Literal["active", "suspended", "blocked"] | None = None
    plan: Identifier | None = Field(
        default=None, description="Upgrades take effect now; downgrades at the next period."
    )
    plan_immediately: bool = Field(
        default=False, description="Apply a plan change now even if it is a downgrade."
    )
    metadata: Metadata | None = None
    overdraft_limit: Credits | None = None


class AccountOut(BaseModel):
    id: str
    name: str
    plan: str | None
    pending_plan: str | None
    status: str
    created_at: datetime
    period_start: datetime
    period_end: datetime
    overdraft_limit: int
    metadata: dict[str, Any]

    @classmethod
    def of(cls, a: records.Account) -> AccountOut:
        return cls(
            id=a.id,
            name=a.name,
            plan=a.plan,
            pending_plan=a.pending_plan,
            status=a.status.value,
            created_at=a.created_at,
            period_start=a.period_start,
            period_end=a.period_end,
            overdraft_limit=a.overdraft_limit,
            metadata=dict(a.metadata),
        )


class AllowanceOut(BaseModel):
    used: int
    limit: int | None = Field(description="null: unlimited")
    remaining: int | None
    percentage: int | None


class PeriodAllowanceOut(AllowanceOut):
    period_start: datetime
    period_end: datetime


class PoolOut(BaseModel):
    available: int
    allowance: AllowanceOut
    unlimited: bool


class PurchasedOut(BaseModel):
    available: int


class WarningOut(BaseModel):
    code: str
    message: str


def allowance_out(a: AllowanceState) -> AllowanceOut:
    return AllowanceOut(used=a.used, limit=a.limit, remaining=a.remaining, percentage=a.percentage)


def warnings_out(warnings: tuple[BalanceWarning, ...]) -> list[WarningOut]:
    return [WarningOut(code=w.code, message=w.message) for w in warnings]


class BalanceOut(BaseModel):
    account: str
    available: int
    held: int
    debt: int
    allowance: PeriodAllowanceOut
    purchased: PurchasedOut
    pools: dict[str, PoolOut]
    warnings: list[WarningOut]
    status: str
    forecast: ForecastOut = Field(
        description="At the burn rate of the last 30 days, when the available credits run out."
    )

    @classmethod
    def of(cls, b: records.Balance, forecast: stats.Forecast) -> BalanceOut:
        return cls(
            forecast=ForecastOut.of(forecast),
            account=b.account_id,
            available=b.available,
            held=b.held,
            debt=b.debt,
            allowance=PeriodAllowanceOut(
                **allowance_out(b.allowance).model_dump(),
                period_start=b.period_start,
                period_end=b.period_end,
            ),
            purchased=PurchasedOut(available=b.purchased_available),
            pools={
                pool: PoolOut(
                    available=p.available,
                    allowance=allowance_out(p.allowance),
                    unlimited=p.unlimited,
                )
                for pool, p in b.pools.items()
            },
            warnings=warnings_out(b.warnings),
            status=b.status.value,
        )
