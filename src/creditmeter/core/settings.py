"""System-wide settings and the warnings they drive."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from creditmeter.core.errors import AllowanceState, InvalidRequest
from creditmeter.core.payments import RefundShortfall
from creditmeter.core.pricing import decimal_of
from creditmeter.core.types import Credits, Enforcement


@dataclass(frozen=True)
class Settings:
    credits_per_usd: Decimal = Decimal(1000)
    default_multiplier: Decimal = Decimal(1)
    welcome_bonus: Credits = 0
    low_balance_threshold: Credits = 1000
    critical_balance_threshold: Credits = 100
    allowance_alerts: tuple[int, ...] = (75, 90, 100)
    minimum_purchase: int = 0
    enforcement: Enforcement = Enforcement.ENFORCE
    default_hold_ttl_seconds: int = 900
    max_hold_ttl_seconds: int = 86_400
    upgrade_url: str | None = None
    refund_shortfall: RefundShortfall = RefundShortfall.ADJUSTMENT
    auto_recharge_max_failures: int = 3
    """Consecutive failed auto-recharges after which auto-recharge is disabled."""
    auto_recharge_retry_seconds: int = 3600
    """How long after a failed auto-recharge the next one may start."""
    grant_expiring_days: int = 7
    """How many days before a grant expires ``grant.expiring`` is sent (0: never)."""


_DECIMALS = {"credits_per_usd", "default_multiplier"}
_INTEGERS = {
    "welcome_bonus",
    "low_balance_threshold",
    "critical_balance_threshold",
    "minimum_purchase",
    "default_hold_ttl_seconds",
    "max_hold_ttl_seconds",
    "auto_recharge_max_failures",
    "auto_recharge_retry_seconds",
    "grant_expiring_days",
}
SETTING_NAMES = frozenset(f.name for f in fields(Settings))


def settings_to_json(settings: Settings) -> dict[str, Any]:
    return {
        "credits_per_usd": str(settings.credits_per_usd),
        "default_multiplier": str(settings.default_multiplier),
        "welcome_bonus": settings.welcome_bonus,
        "low_balance_threshold": settings.low_balance_threshold,
        "critical_balance_threshold": settings.critical_balance_threshold,
        "allowance_alerts": list(settings.allowance_alerts),
        "minimum_purchase": settings.minimum_purchase,
        "enforcement": settings.enforcement.value,
        "default_hold_ttl_seconds": settings.default_hold_ttl_seconds,
        "max_hold_ttl_seconds": settings.max_hold_ttl_seconds,
        "upgrade_url": settings.upgrade_url,
        "refund_shortfall": settings.refund_shortfall.value,
        "auto_recharge_max_failures": settings.auto_recharge_max_failures,
        "auto_recharge_retry_seconds": settings.auto_recharge_retry_seconds,
        "grant_expiring_days": settings.grant_expiring_days,
    }


def apply_changes(settings: Settings, changes: Mapping[str, object]) -> Settings:
    """``settings`` with ``changes`` applied and validated; unknown names are refused."""
    unknown = set(changes) - SETTING_NAMES
    if unknown:
        raise InvalidRequest(f"unknown settings: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _DECIMALS:
            values[name] = decimal_of(value, name)
        elif name in _INTEGERS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRequest(f"{name} must be an integer ≥ 0")
            values[name] = value
        elif name == "allowance_alerts":
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 100 for v in value
            ):
                raise InvalidRequest("allowance_alerts must be a list of percentages 1–100")
            values[name] = tuple(sorted(set(value)))
        elif name == "enforcement":
            try:
                values[name] = Enforcement(str(value))
            except ValueError:
                modes = ", ".join(m.value for m in Enforcement)
                raise InvalidRequest(f"enforcement must be one of {modes}") from None
        elif name == "refund_shortfall":
            try:
                values[name] = RefundShortfall(str(value))
            except ValueError:
                options = ", ".join(m.value for m in RefundShortfall)
                raise InvalidRequest(f"refund_shortfall must be one of {options}") from None
        elif name == "upgrade_url":
            if value is not None and not isinstance(value, str):
                raise InvalidRequest("upgrade_url must be a string or null")
            values[name] = value
    return replace(settings, **values)


def settings_from_json(data: Mapping[str, object]) -> Settings:
    return apply_changes(Settings(), data)


@dataclass(frozen=True)
class BalanceWarning:
    code: str
    message: str


def balance_warnings(
    settings: Settings, available: Credits, allowance: AllowanceState, *, unlimited: bool = False
) -> list[BalanceWarning]:
    """What an account should be told about its balance now; nothing about a low balance
    when its usage is ``unlimited`` and draws no credits."""
    warnings: list[BalanceWarning] = []
    if allowance.percentage is not None:
        crossed = [p for p in settings.allowance_alerts if allowance.percentage >= p]
        if crossed:
            top = crossed[-1]
            warnings.append(
                BalanceWarning(f"allowance_{top}", f"{top} % of monthly allowance used")
            )
    if unlimited:
        return warnings
    if available <= settings.critical_balance_threshold:
        warnings.append(
            BalanceWarning("balance_critical", f"balance is critical: {available} credits left")
        )
    elif available <= settings.low_balance_threshold:
        warnings.append(BalanceWarning("balance_low", f"balance is low: {available} credits left"))
    return warnings
