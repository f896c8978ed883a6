"""Plans: per-pool allowances, the features they allow, their period and rollover."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from creditmeter.core.errors import InvalidRequest
from creditmeter.core.types import ANY_POOL, Credits, FeatureKey, PeriodKind, PlanKey, PoolName

ALL_FEATURES: Literal["*"] = "*"


@dataclass(frozen=True)
class Plan:
    """A plan.

    ``allowances`` maps a pool to its credits per period, or ``None`` for unlimited; a pool
    that is absent has no allowance (the account pays from other grants). ``features`` is
    the set of features the plan allows, or ``"*"`` for all of them. ``rollover_cap`` is
    how much unused allowance carries into the next period (``0``: none).
    """

    key: PlanKey
    name: str
    allowances: Mapping[PoolName, Credits | None]
    features: frozenset[FeatureKey] | Literal["*"]
    period: PeriodKind = PeriodKind.CALENDAR_MONTH
    rollover_cap: Credits = 0

    def allows(self, feature: FeatureKey) -> bool:
        return self.features == ALL_FEATURES or feature in self.features

    def is_unlimited(self, pool: PoolName) -> bool:
        """Whether features of ``pool`` are allowed without drawing any grant."""
        if pool in self.allowances:
            return self.allowances[pool] is None
        return ANY_POOL in self.allowances and self.allowances[ANY_POOL] is None

    @property
    def renewed_by_invoice(self) -> bool:
        """Its allowance is issued when the subscription's invoice is paid, not when a
        period begins."""
        return self.period is PeriodKind.BILLING_CYCLE

    def limited_allowances(self) -> dict[PoolName, Credits]:
        return {pool: n for pool, n in self.allowances.items() if n is not None}

    def is_upgrade_from(self, old: Plan) -> bool:
        """True when no pool's allowance is smaller than under ``old``."""
        pools = set(old.allowances) | set(self.allowances)
        return all(_at_least(self.allowances.get(p, 0), old.allowances.get(p, 0)) for p in pools)


def _at_least(new: Credits | None, old: Credits | None) -> bool:
    if new is None:
        return True
    return old is not None and new >= old


def plan_from_json(key: PlanKey, data: Mapping[str, object]) -> Plan:
    allowances_raw = data.get("allowances", {})
    if not isinstance(allowances_raw, Mapping):
        raise InvalidRequest("allowances must map a pool to an integer or null")
    allowances: dict[PoolName, Credits | None] = {}
    for pool, amount in allowances_raw.items():
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
            raise InvalidRequest(f"allowance of pool {pool!r} must be an integer or null")
        if amount is not None and amount < 0:
            raise InvalidRequest(f"allowance of pool {pool!r} must be ≥ 0")
        allowances[str(pool)] = amount
    features_raw = data.get("features", ALL_FEATURES)
    features: frozenset[FeatureKey] | Literal["*"]
    if features_raw == ALL_FEATURES:
        features = ALL_FEATURES
    elif isinstance(features_raw, list | tuple | set | frozenset) and all(
        isinstance(f, str) for f in features_raw
    ):
        features = frozenset(features_raw)
    else:
        raise InvalidRequest('features must be a list of feature keys or "*"')
    try:
        period = PeriodKind(str(data.get("period", PeriodKind.CALENDAR_MONTH)))
    except ValueError:
        kinds = ", ".join(k.value for k in PeriodKind)
        raise InvalidRequest(f"period must be one of {kinds}") from None
    rollover_cap = data.get("rollover_cap", 0)
    if isinstance(rollover_cap, bool) or not isinstance(rollover_cap, int) or rollover_cap < 0:
        raise InvalidRequest("rollover_cap must be an integer ≥ 0")
    return Plan(
        key=key,
        name=str(data.get("name", key)),
        allowances=allowances,
        features=features,
        period=period,
        rollover_cap=rollover_cap,
    )


def plan_to_json(plan: Plan) -> dict[str, object]:
    return {
        "name": plan.name,
        "allowances": dict(plan.allowances),
        "features": plan.features if plan.features == ALL_FEATURES else sorted(plan.features),
        "period": plan.period.value,
        "rollover_cap": plan.rollover_cap,
    }
