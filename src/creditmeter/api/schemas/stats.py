"""Shapes of the stats: the admin overview, breakdowns, account search, usage charts and the
balance's forecast. Dollars and ratios are decimal strings, never floats."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from creditmeter.core import stats
from creditmeter.core.pricing import decimal_text

USD = Field(description="US dollars, a decimal string.", examples=["12.5"])


def _usd(value: Decimal) -> str:
    return decimal_text(value)


def _ratio(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


class IssuedOut(BaseModel):
    allowance: int
    purchased: int = Field(description="Purchases and auto-recharges.")
    granted: int = Field(description="Bonus, promotional and admin grants.")
    refunded: int = Field(description="Refund grants: credits given back, not in the total.")
    voided: int = Field(description="Taken out by voids in the range, not subtracted.")
    total: int = Field(description="allowance + purchased + granted.")

    @classmethod
    def of(cls, i: stats.CreditsIssued) -> IssuedOut:
        return cls(
            allowance=i.allowance,
            purchased=i.purchased,
            granted=i.granted,
            refunded=i.refunded,
            voided=i.voided,
            total=i.total,
        )


class RevenueOut(BaseModel):
    currency: str
    purchases: int
    gross: int = Field(description="Minor units paid for purchases paid in the range.")
    refunded: int = Field(description="Minor units refunded of those purchases.")
    net: int = Field(description="gross - refunded.")

    @classmethod
    def of(cls, r: stats.Revenue) -> RevenueOut:
        return cls(
            currency=r.currency,
            purchases=r.purchases,
            gross=r.gross,
            refunded=r.refunded,
            net=r.net,
        )


class TopAccountOut(BaseModel):
    account: str
    name: str
    credits: int = Field(description="Credits its usage in the range drew.")


class BreakdownOut(BaseModel):
    key: str = Field(description="The model (empty: none named) or the feature.")
    events: int
    credits: int = Field(description="Billable credits, net of usage refunds.")
    billable_usd: str = USD
    provider_cost_usd: str = USD
    margin_usd: str = USD
    margin_ratio: str | None = Field(description="margin / billable; null if nothing billed.")

    @classmethod
    def of(cls, b: stats.UsageBreakdown) -> BreakdownOut:
        return cls(
            key=b.key,
            events=b.events,
            credits=b.credits,
            billable_usd=_usd(b.billable_usd),
            provider_cost_usd=_usd(b.provider_cost_usd),
            margin_usd=_usd(b.margin_usd),
            margin_ratio=_ratio(b.margin_ratio),
        )


class BreakdownsOut(BaseModel):
    data: list[BreakdownOut]


class StatsOut(BaseModel):
    since: datetime
    until: datetime
    issued: IssuedOut
    consumed: int = Field(description="Credits usage drew from accounts, net of refunds.")
    billable_credits: int = Field(description="Credits usage was priced at, net of refunds.")
    billable_usd: str = USD
    provider_cost_usd: str = USD
    margin_usd: str = USD
    margin_ratio: str | None
    events: int
    events_without_cost: int
    revenue: list[RevenueOut]
    accounts: int
    active_accounts: int = Field(description="With usage in the 30 days before `until`.")
    average_balance: str = Field(description="Average available credits, a decimal string.")
    low_accounts: int
    critical_accounts: int
    top_accounts: list[TopAccountOut]
    models: list[BreakdownOut]
    features: list[BreakdownOut]

    @classmethod
    def of(cls, s: stats.SystemStats) -> StatsOut:
        return cls(
            since=s.since,
            until=s.until,
            issued=IssuedOut.of(s.issued),
            consumed=s.consumed,
            billable_credits=s.billable_credits,
            billable_usd=_usd(s.billable_usd),
            provider_cost_usd=_usd(s.provider_cost_usd),
            margin_usd=_usd(s.margin_usd),
            margin_ratio=_ratio(s.margin_ratio),
            events=s.events,
            events_without_cost=s.events_without_cost,
            revenue=[RevenueOut.of(r) for r in s.revenue],
            accounts=s.accounts,
            active_accounts=s.active_accounts,
            average_balance=format(s.average_balance, "f"),
            low_accounts=s.low_accounts,
            critical_accounts=s.critical_accounts,
            top_accounts=[
                TopAccountOut(account=t.account_id, name=t.name, credits=t.credits)
                for t in s.top_accounts
            ],
            models=[BreakdownOut.of(m) for m in s.models],
            features=[BreakdownOut.of(f) for f in s.features],
        )


class AccountSummaryOut(BaseModel):
    id: str
    name: str
    plan: str | None
    status: str
    available: int
    level: str = Field(description="healthy, low or critical, by the settings' thresholds.")
    created_at: datetime
    credits_used_30d: int = Field(description="Credits its usage drew in the last 30 days.")

    @classmethod
    def of(cls, a: stats.AccountSummary) -> AccountSummaryOut:
        return cls(
            id=a.id,
            name=a.name,
            plan=a.plan,
            status=a.status.value,
            available=a.available,
            level=a.level.value,
            created_at=a.created_at,
            credits_used_30d=a.credits_used_30d,
        )


class AccountSearchOut(BaseModel):
    data: list[AccountSummaryOut]
    next_cursor: str | None


class DailyUsageOut(BaseModel):
    day: date = Field(description="A UTC day.")
    key: str = Field(description="The feature, model or member (empty: none).")
    credits: int = Field(description="Billable credits, net of usage refunds.")


class DailyUsagesOut(BaseModel):
    data: list[DailyUsageOut]

    @classmethod
    def of(cls, rows: list[stats.DailyUsage]) -> DailyUsagesOut:
        return cls(data=[DailyUsageOut(day=r.day, key=r.key, credits=r.credits) for r in rows])


class ForecastOut(BaseModel):
    days: int = Field(description="The days the burn rate is taken over.")
    consumed: int = Field(description="Credits drawn in those days.")
    burn_per_day: str = Field(description="Credits a day, a decimal string.")
    runs_out_on: date | None = Field(
        description="The UTC day the available credits run out at that rate; null: never."
    )

    @classmethod
    def of(cls, f: stats.Forecast) -> ForecastOut:
        return cls(
            days=f.days,
            consumed=f.consumed,
            burn_per_day=format(f.burn_per_day, "f"),
            runs_out_on=f.runs_out_on,
        )
