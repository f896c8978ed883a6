"""Rating: turning a usage's quantities into credits.

``credits = ceil(multiplier × Σ quantity[unit] × rate[unit])``, with per-model rate
overrides, computed exactly in ``Decimal`` and rounded up once per usage. A model's name
finds its rates as given or as the same model of the price catalogue (a dated or aliased
name); a model the rule cannot price is refused unless the rule says to use its default
rates. A cost-plus rule prices the provider's cost instead:
``ceil(cost in USD × credits per USD × multiplier)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from creditmeter.core.errors import InvalidRequest, UnknownModel
from creditmeter.core.models import PROMPT_UNITS, TIER, same_model, tiered_price
from creditmeter.core.types import ANY_POOL, MAX_CREDITS, Credits, FeatureKey, PoolName

Quantity = int | Decimal
Usage = Mapping[str, Quantity]

CALLS: Final = "calls"
"""The unit of fixed-cost operations: a usage with no quantities is one call."""


class UnknownModels(StrEnum):
    """What a rule with per-model rates does with a model it has no rates for."""

    REFUSE = "refuse"
    DEFAULT_RATES = "default_rates"


@dataclass(frozen=True)
class PricingRule:
    rates: Mapping[str, Decimal]
    models: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    multiplier: Decimal = Decimal(1)
    unknown_models: UnknownModels = UnknownModels.REFUSE
    cost_plus: bool = False
    """Priced from the provider's cost of the usage (the price book's model prices), not
    from ``rates``, which a cost-plus rule does not have."""

    def model_key(self, model: str | None) -> str | None:
        """The key of ``models`` whose rates price ``model``: the name as given, else the
        first key (in order) that names the same model of the price catalogue."""
        if model is None or model in self.models:
            return model
        return next((key for key in sorted(self.models) if same_model(key, model)), None)

    def is_unknown(self, model: str | None) -> bool:
        """Whether ``model`` is named, the rule has per-model rates, and none for it."""
        return model is not None and bool(self.models) and self.model_key(model) is None

    def rates_for(self, model: str | None) -> Mapping[str, Decimal]:
        key = self.model_key(model)
        if key is None:
            return self.rates
        return {**self.rates, **self.models[key]}


@dataclass(frozen=True)
class Feature:
    key: FeatureKey
    name: str
    pool: PoolName
    rule: PricingRule
    version: int = 1


@dataclass(frozen=True)
class Priced:
    credits: Credits
    unknown_model: bool = False
    """The model had no rates of its own and was priced at the feature's default rates."""


def price_feature(feature: Feature, usage: Usage, model: str | None) -> Priced:
    """A usage priced under a feature's rule; a model the rule cannot price is refused
    (``UnknownModel``) unless the rule says to use its default rates."""
    unknown = feature.rule.is_unknown(model)
    if unknown and feature.rule.unknown_models is UnknownModels.REFUSE:
        raise UnknownModel(str(model), feature.key)
    return Priced(price(feature.rule, usage, model), unknown)


def decimal_of(value: object, what: str) -> Decimal:
    """A finite, non-negative Decimal from an int, Decimal or decimal string; never a float."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise InvalidRequest(f"{what} must be an integer or a decimal string, not {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise InvalidRequest(f"{what} is not a decimal number: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise InvalidRequest(f"{what} must be a finite number ≥ 0, not {value!r}")
    return result


PROVIDER_COST_LIMIT: Final = Decimal(10) ** 10
"""A provider's cost is kept with 10 digits before the point and 10 after it."""
_PROVIDER_COST_UNIT: Final = Decimal(1).scaleb(-10)


def provider_cost_of(value: object) -> Decimal:
    """A provider's cost as it is kept: a finite decimal ≥ 0 below 10^10 (never a float),
    rounded to 10 decimals half away from zero, as PostgreSQL's ``NUMERIC(20, 10)``
    rounds it."""
    cost = decimal_of(value, "provider_cost")
    if cost < PROVIDER_COST_LIMIT:
        cost = cost.quantize(_PROVIDER_COST_UNIT, rounding=ROUND_HALF_UP)
    if cost >= PROVIDER_COST_LIMIT:
        raise InvalidRequest(f"provider_cost must be less than 10^10, not {value!r}")
    return cost


def rule_from_json(data: Mapping[str, object]) -> PricingRule:
    rates = _rates(data.get("rates", {}), "rates")
    models_raw = data.get("models", {})
    if not isinstance(models_raw, Mapping):
        raise InvalidRequest("models must map a model name to its rates")
    models = {str(name): _rates(r, f"models.{name}") for name, r in models_raw.items()}
    multiplier = decimal_of(data.get("multiplier", 1), "multiplier")
    cost_plus = data.get("cost_plus", False)
    if not isinstance(cost_plus, bool):
        raise InvalidRequest("cost_plus must be true or false")
    if not rates and not models and not cost_plus:
        raise InvalidRequest("a pricing rule needs at least one rate, or to be cost-plus")
    if cost_plus and (rates or models):
        raise InvalidRequest("a cost-plus rule prices from the provider's cost: it has no rates")
    unknown = data.get("unknown_models", UnknownModels.REFUSE.value)
    if not isinstance(unknown, str) or unknown not in {u.value for u in UnknownModels}:
        choices = " or ".join(repr(u.value) for u in UnknownModels)
        raise InvalidRequest(f"unknown_models must be {choices}, not {unknown!r}")
    return PricingRule(rates, models, multiplier, UnknownModels(unknown), cost_plus)


def decimal_text(value: Decimal) -> str:
    """A decimal as written: ``0.5``, ``2``, ``0.03`` (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")


def rule_to_json(rule: PricingRule) -> dict[str, object]:
    return {
        "rates": {unit: str(rate) for unit, rate in rule.rates.items()},
        "models": {
            model: {unit: str(rate) for unit, rate in rates.items()}
            for model, rates in rule.models.items()
        },
        "multiplier": str(rule.multiplier),
        "unknown_models": rule.unknown_models.value,
        "cost_plus": rule.cost_plus,
    }


def _rates(raw: object, what: str) -> dict[str, Decimal]:
    if not isinstance(raw, Mapping):
        raise InvalidRequest(f"{what} must map a unit to a decimal rate")
    return {str(unit): decimal_of(rate, f"{what}.{unit}") for unit, rate in raw.items()}


def normalize_usage(usage: Mapping[str, object] | None) -> dict[str, Quantity]:
    """Validated quantities: ints or Decimals ≥ 0; an empty usage is one call."""
    if not usage:
        return {CALLS: 1}
    result: dict[str, Quantity] = {}
    for unit, value in usage.items():
        quantity = decimal_of(value, f"usage.{unit}")
        result[str(unit)] = int(quantity) if quantity == quantity.to_integral_value() else quantity
    return result


PRICING_CONTEXT = Context(prec=80, rounding=ROUND_CEILING, traps=[InvalidOperation])
"""Exact for any quantity and rate a request can carry: nothing is rounded before the
one rounding up to whole credits."""


def price(rule: PricingRule, usage: Usage, model: str | None = None) -> Credits:
    """The credits a usage costs under a rule, rounded up once; at most MAX_CREDITS."""
    rates = rule.rates_for(model)
    total = Decimal(0)
    for unit, quantity in usage.items():
        if unit not in rates:
            known = ", ".join(sorted(rates)) or "none"
            raise InvalidRequest(f"unit {unit!r} is not priced (priced units: {known})")
        total = PRICING_CONTEXT.add(total, PRICING_CONTEXT.multiply(Decimal(quantity), rates[unit]))
    credits = math.ceil(PRICING_CONTEXT.multiply(total, rule.multiplier))
    if credits > MAX_CREDITS:
        raise InvalidRequest(f"this usage prices at {credits} credits, over {MAX_CREDITS}")
    return credits


_PER_MILLION: Final = Decimal(10) ** 6
BILLED_AS: Final = {
    "cached_tokens": "input_tokens",
    "cache_write_tokens": "input_tokens",
    "reasoning_tokens": "output_tokens",
}
"""What a token kind costs where the model has no price of its own for it: a provider
without a cache price bills cached prompt tokens as input, and reasoning is output."""


@dataclass(frozen=True)
class CostPriced:
    """A usage of a cost-plus feature: the provider's cost in USD and its credits."""

    credits: Credits
    provider_cost: Decimal


def price_cost_plus(
    feature: Feature,
    usage: Usage,
    model: str | None,
    usd_per_million: Mapping[str, Decimal] | None,
    credits_per_usd: Decimal,
) -> CostPriced:
    """``ceil(provider cost × credits_per_usd × multiplier)``, the cost being the usage's
    quantities at the model's prices (``None``: the price book has none for the model) —
    each at its tier for the prompt's size where the model's price is tiered — all exact
    and rounded up once."""
    if usd_per_million is None:
        raise UnknownModel(str(model), feature.key)
    prompt = sum((Decimal(usage.get(unit, 0)) for unit in PROMPT_UNITS), Decimal(0))
    cost = Decimal(0)
    for unit, quantity in usage.items():
        priced_as = unit if unit in usd_per_million else BILLED_AS.get(unit, unit)
        if priced_as not in usd_per_million or TIER in unit:
            units = sorted(u for u in usd_per_million if TIER not in u)
            known = ", ".join(units) or "none"
            raise InvalidRequest(f"unit {unit!r} has no price for {model!r} (priced: {known})")
        rate = tiered_price(usd_per_million, priced_as, prompt)
        cost = PRICING_CONTEXT.add(cost, PRICING_CONTEXT.multiply(Decimal(quantity), rate))
    cost = PRICING_CONTEXT.divide(cost, _PER_MILLION)
    worth = PRICING_CONTEXT.multiply(cost, credits_per_usd)
    credits = math.ceil(PRICING_CONTEXT.multiply(worth, feature.rule.multiplier))
    if credits > MAX_CREDITS:
        raise InvalidRequest(f"this usage prices at {credits} credits, over {MAX_CREDITS}")
    return CostPriced(credits, cost)


def credit_amount(value: object, what: str, *, minimum: int = 0) -> Credits:
    """An integer number of credits from ``minimum`` to MAX_CREDITS; never a bool or float."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be an integer")
    if not minimum <= value <= MAX_CREDITS:
        raise InvalidRequest(f"{what} must be from {minimum} to {MAX_CREDITS}")
    return value


def pool_matches(grant_pool: PoolName, feature_pool: PoolName) -> bool:
    return grant_pool in (ANY_POOL, feature_pool)
