"""What the admin overview, the breakdowns, account search and the usage charts report.

Plain values: the store sums, the service puts the sums together with the settings here.
docs/stats.md says what each number means and how it is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final

from creditmeter.core.settings import Settings
from creditmeter.core.types import AccountId, AccountStatus, Credits, PlanKey

USD_PLACES: Final = Decimal("0.0000000001")
"""Dollars are kept to the provider cost's own scale (ten places)."""
RATIO_PLACES: Final = Decimal("0.0001")
ACTIVE_DAYS: Final = 30
"""An account is active when it recorded usage in this many days before the end."""
TOP_ACCOUNTS: Final = 10
FORECAST_DAYS: Final = 30
"""A forecast's burn rate is the account's consumption over this many days."""


class Level(StrEnum):
    """Where an account's available credits stand against the settings' thresholds."""

    HEALTHY = "healthy"
    LOW = "low"
    CRITICAL = "critical"


def level_of(available: Credits, settings: Settings) -> Level:
    """As the balance warnings say it: at or under the critical threshold is critical, at
    or under the low one is low."""
    if available <= settings.critical_balance_threshold:
        return Level.CRITICAL
    if available <= settings.low_balance_threshold:
        return Level.LOW
    return Level.HEALTHY


def tidy(value: Decimal) -> Decimal:
    """``value`` without trailing zeros or an exponent: ``0.4``, ``0``, ``1200``."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal  # type: ignore[operator]


def usd_of(credits: Credits, settings: Settings) -> Decimal:
    """What ``credits`` sell for, in dollars, at the settings' credits per USD."""
    if settings.credits_per_usd <= 0:
        return Decimal(0)
    return tidy((Decimal(credits) / settings.credits_per_usd).quantize(USD_PLACES, ROUND_HALF_EVEN))


def margin_ratio(billable_usd: Decimal, margin_usd: Decimal) -> Decimal | None:
    """The margin as a share of what was billed; ``None`` when nothing was billed."""
    if billable_usd == 0:
        return None
    return (margin_usd / billable_usd).quantize(RATIO_PLACES, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class CreditsIssued:
    """Credits put into accounts by grants created in the range, by where they came from:
    ``granted`` is bonus, promotional and admin grants; ``refunded`` (refund grants) gives
    back credits already counted as issued and is not in the total; ``voided`` is what
    voids in the range took back out (not subtracted either)."""

    allowance: Credits
    purchased: Credits
    granted: Credits
    refunded: Credits
    voided: Credits

    @property
    def total(self) -> Credits:
        return self.allowance + self.purchased + self.granted


@dataclass(frozen=True)
class Revenue:
    """Money taken for purchases paid in the range, in one currency's minor units."""

    currency: str
    purchases: int
    gross: int
    refunded: int

    @property
    def net(self) -> int:
        return self.gross - self.refunded


@dataclass(frozen=True)
class TopAccount:
    account_id: AccountId
    name: str
    credits: Credits


@dataclass(frozen=True)
class UsageBreakdown:
    """Usage in the range of one model or one feature."""

    key: str
    events: int
    credits: Credits
    billable_usd: Decimal
    provider_cost_usd: Decimal
    margin_usd: Decimal
    margin_ratio: Decimal | None


@dataclass(frozen=True)
class ModelStats(UsageBreakdown):
    """``key`` is the model; ``""`` for usage that named none."""


@dataclass(frozen=True)
class FeatureStats(UsageBreakdown):
    """``key`` is the feature."""


@dataclass(frozen=True)
class SystemStats:
    since: datetime
    until: datetime
    issued: CreditsIssued
    consumed: Credits
    """Credits usage in the range drew from accounts (grants and debt), net of usage
    refunds."""
    billable_credits: Credits
    """Credits usage in the range was priced at (unlimited allowances included), net of
    usage refunds."""
    billable_usd: Decimal
    provider_cost_usd: Decimal
    margin_usd: Decimal
    margin_ratio: Decimal | None
    events: int
    events_without_cost: int
    """Usage events with no provider cost recorded: they count as costing nothing."""
    revenue: tuple[Revenue, ...]
    accounts: int
    active_accounts: int
    average_balance: Decimal
    low_accounts: int
    critical_accounts: int
    top_accounts: tuple[TopAccount, ...]
    models: tuple[ModelStats, ...]
    """The usage by model, as :meth:`CreditMeter.model_stats` gives it."""
    features: tuple[FeatureStats, ...]
    """The usage by feature, as :meth:`CreditMeter.feature_stats` gives it."""


@dataclass(frozen=True)
class AccountSummary:
    id: AccountId
    name: str
    plan: PlanKey | None
    status: AccountStatus
    available: Credits
    level: Level
    created_at: datetime
    credits_used_30d: Credits


@dataclass(frozen=True)
class AccountPage:
    items: list[AccountSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class DailyUsage:
    day: date
    key: str
    credits: Credits


@dataclass(frozen=True)
class Forecast:
    """At the account's burn rate over the last ``days`` days, when its credits run out."""

    account_id: AccountId
    available: Credits
    days: int
    consumed: Credits
    burn_per_day: Decimal
    runs_out_on: date | None
    """``None`` when nothing was consumed (the credits do not run out at that rate)."""


def forecast(
    account_id: AccountId, available: Credits, consumed: Credits, days: int, now: datetime
) -> Forecast:
    """At ``consumed`` credits over the ``days`` before ``now``, the day ``available`` runs
    out; ``None`` when nothing was consumed, or when it lasts past any date."""
    burn = Decimal(consumed) / days if days > 0 else Decimal(0)
    runs_out: date | None = None
    if consumed > 0:
        if available <= 0:
            runs_out = now.date()
        else:
            seconds = (Decimal(available) * 86_400 / burn).to_integral_value(ROUND_CEILING)
            try:
                runs_out = (now + timedelta(seconds=int(seconds))).date()
            except OverflowError:
                runs_out = None
    return Forecast(
        account_id=account_id,
        available=available,
        days=days,
        consumed=consumed,
        burn_per_day=burn.quantize(Decimal("0.01"), ROUND_HALF_EVEN),
        runs_out_on=runs_out,
    )
