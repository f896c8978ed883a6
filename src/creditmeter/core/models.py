"""Models as the price catalogue (``genai-prices``, its bundled offline snapshot) knows
them: their names (``gpt-4o-2024-08-06`` is ``gpt-4o``, ``claude-sonnet-4-20250514`` is
``claude-sonnet-4-0``) and their providers' prices. Only the bundled snapshot is read;
nothing is fetched."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import metadata
from typing import Final

from creditmeter.core.errors import InvalidRequest


@lru_cache(maxsize=4096)
def catalogue_model(name: str) -> str | None:
    """``provider:model`` of the catalogue's model that ``name`` refers to, or ``None``."""
    # Imported on first use: the snapshot takes a tenth of a second to load, and a name
    # that a feature lists as it is given never needs it.
    from genai_prices.data_snapshot import get_snapshot

    try:
        provider, model = get_snapshot().find_provider_model(name, None, None, None)
    except LookupError:
        return None
    return f"{provider.id}:{model.id}"


def same_model(a: str, b: str) -> bool:
    """Whether two names refer to one model of the catalogue."""
    known = catalogue_model(a)
    return known is not None and known == catalogue_model(b)


UNITS: Final = {
    "input_mtok": "input_tokens",
    "output_mtok": "output_tokens",
    "cache_read_mtok": "cached_tokens",
    "cache_write_mtok": "cache_write_tokens",
    "output_reasoning_mtok": "reasoning_tokens",
}
"""The catalogue's per-token prices that are imported, by the usage unit they price."""

TIER: Final = ">"
"""A price tier is kept as a unit of its own, ``input_tokens>200000``: the unit's price for
a usage whose prompt is over that many tokens."""
PROMPT_UNITS: Final = ("input_tokens", "cached_tokens", "cache_write_tokens")
"""The units whose sum is the prompt's size, which decides a price's tier."""


def tier_unit(unit: str, start: int) -> str:
    """The key of ``unit``'s price for a prompt of over ``start`` tokens."""
    return f"{unit}{TIER}{start}"


def tiered_price(prices: Mapping[str, Decimal], unit: str, prompt: int | Decimal) -> Decimal:
    """``unit``'s price for a usage whose prompt has ``prompt`` tokens: the price of the
    highest tier whose start the prompt is over (it applies to the whole usage, as the
    providers charge a long context), else the base price."""
    price, reached = prices[unit], -1
    for key, tier in prices.items():
        base, mark, start = key.partition(TIER)
        if mark and base == unit and start.isdigit() and reached < int(start) < prompt:
            price, reached = tier, int(start)
    return price


PRICE_UNIT: Final = Decimal(1).scaleb(-10)
"""Prices are kept to 10 decimals of a USD per million units, rounded half away from zero
(the catalogue has float artefacts such as ``0.18000000000000002``)."""


@dataclass(frozen=True, order=True)
class ModelPrice:
    """What a provider charges for one unit of a model's usage, in USD per million."""

    provider: str
    model: str
    unit: str
    usd_per_million: Decimal


@dataclass(frozen=True)
class PriceBookVersion:
    """One import of the catalogue's prices: kept as it was, never edited."""

    version: int
    source: str
    providers: tuple[str, ...] | None
    """The providers this import refreshed; ``None``: all of them."""
    prices: int
    created_at: datetime


def catalogue_source() -> str:
    return f"genai-prices {metadata.version('genai-prices')}"


def catalogue_prices(at: datetime, providers: Collection[str] | None = None) -> list[ModelPrice]:
    """The catalogue's prices in force at ``at``, of ``providers`` (default: every one);
    a provider the catalogue does not have is refused, naming those it has."""
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.types import TieredPrices

    known = {p.id: p for p in get_snapshot().providers}
    wanted = sorted(known) if providers is None else sorted(set(providers))
    missing = [p for p in wanted if p not in known]
    if missing:
        raise InvalidRequest(
            f"the price catalogue has no provider {', '.join(map(repr, missing))} "
            f"(it has {', '.join(sorted(known))})"
        )
    found: list[ModelPrice] = []
    for provider in wanted:
        for model in known[provider].models:
            prices = model.get_prices(at)
            for key, unit in UNITS.items():
                price = getattr(prices, key, None)
                tiers = [(unit, price)]
                if isinstance(price, TieredPrices):
                    tiers = [(unit, price.base)]
                    tiers += [(tier_unit(unit, t.start), t.price) for t in price.tiers]
                for name, usd in tiers:
                    if usd is not None:
                        exact = Decimal(usd).quantize(PRICE_UNIT, rounding=ROUND_HALF_UP)
                        found.append(ModelPrice(provider, model.id, name, exact))
    return sorted(found)
