"""The price book (features) and the plans."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from creditmeter.api.schemas.common import Body, Credits, Identifier, Text, whole_number
from creditmeter.api.schemas.ledger import POOL_PATTERN, Pool, Timestamp, TransactionOut
from creditmeter.core.identifiers import IDENTIFIER_PATTERN
from creditmeter.core.models import ModelPrice, PriceBookVersion
from creditmeter.core.plans import ALL_FEATURES, Plan
from creditmeter.core.pricing import Feature, decimal_text, rule_to_json
from creditmeter.core.rerating import RerateBooking, RerateLine, RerateReport

DECIMAL = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?")
MAX_INTEGER_RATE = 10**15


def _rate(value: object) -> object:
    """An integer ≥ 0 or a decimal string; a float is refused, not rounded, unless it is
    a whole number (``2.0``), which JSON Schema counts as an integer."""
    value = whole_number(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError('a rate is a decimal string such as "0.002" or an integer, not a float')
    if isinstance(value, str) and not DECIMAL.fullmatch(value):
        raise ValueError(f'{value!r} is not a decimal number ≥ 0 such as "0.002"')
    if isinstance(value, int) and not 0 <= value <= MAX_INTEGER_RATE:
        raise ValueError(f"an integer rate is from 0 to {MAX_INTEGER_RATE}")
    return value


Rate = Annotated[
    StrictInt | StrictStr,
    BeforeValidator(_rate),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{DECIMAL.pattern}$"},
                {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER_RATE},
            ],
            "description": 'A decimal string (`"0.002"`) or an integer ≥ 0; never a float.',
            "examples": ["0.002", 50],
        }
    ),
]
"""A rate or a multiplier in a request: exact, so never a float."""

Unit = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
ModelName = Annotated[str, Field(pattern=r"^[^\x00]{1,255}$")]
Rates = Annotated[
    dict[Unit, Rate],
    Field(json_schema_extra={"additionalProperties": False}),
]
Allowance = Annotated[str, Field(pattern=POOL_PATTERN)]


def _closed(**schema: Any) -> Any:
    """A mapping whose keys all match its ``patternProperties``: no other key is allowed."""
    return Field(json_schema_extra={"additionalProperties": False}, **schema)


UnknownModelsChoice = Literal["refuse", "default_rates"]
"""The values of ``UnknownModels``."""

Period = Literal["calendar_month", "anniversary_month", "30_days", "billing_cycle"]
"""The values of ``PeriodKind``: a strict body takes a literal, not an enum."""


class FeaturePut(Body):
    name: Text | None = Field(default=None, description="Default: the key.")
    pool: Pool | None = Field(
        default=None, description="The allowance pool it draws from. Default: the key."
    )
    rates: Rates = Field(
        default_factory=dict,
        description="Credits per unit (`calls` for a fixed price); none for a cost-plus feature.",
    )
    models: dict[ModelName, Rates] = _closed(
        default_factory=dict, description="Per-model rates that override `rates`."
    )
    multiplier: Rate | None = Field(
        default=None,
        description="Default: 1; for a cost-plus feature, the settings' `default_multiplier`.",
    )
    cost_plus: bool = Field(
        default=False,
        description="Priced `ceil(provider cost in USD × credits_per_usd × multiplier)`, the "
        "cost being the usage at the price book's model prices (`POST /v1/prices/sync`).",
    )
    unknown_models: UnknownModelsChoice = Field(
        default="refuse",
        description="A model that `models` cannot price (as named, or as the price "
        "catalogue's same model): refused with `unknown_model` (`refuse`), or priced at "
        "`rates` and flagged on its usage record (`default_rates`). A feature without "
        "`models` prices any model at `rates`.",
    )

    @model_validator(mode="after")
    def _priced(self) -> FeaturePut:
        if not self.rates and not self.cost_plus:
            raise ValueError("a feature needs rates, or to be cost-plus")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Chat",
                    "pool": "chat",
                    "rates": {"input_tokens": "0.002", "output_tokens": "0.008"},
                    "models": {"gpt-4o": {"input_tokens": "0.005", "output_tokens": "0.02"}},
                    "multiplier": "1.2",
                },
                {"name": "Generate a goal", "rates": {"calls": 50}},
                {"name": "Chat at cost", "cost_plus": True, "multiplier": "1.3"},
            ]
        }
    )


class FeatureOut(BaseModel):
    key: str
    name: str
    pool: str
    rates: dict[str, str] = Field(description="Decimal strings, never floats.")
    models: dict[str, dict[str, str]]
    multiplier: str
    unknown_models: UnknownModelsChoice
    cost_plus: bool
    version: int = Field(description="Goes up by one with every change of the feature.")

    @classmethod
    def of(cls, f: Feature) -> FeatureOut:
        rule = rule_to_json(f.rule)
        rates = rule["rates"]
        models = rule["models"]
        assert isinstance(rates, dict)
        assert isinstance(models, dict)
        return cls(
            key=f.key,
            name=f.name,
            pool=f.pool,
            rates=rates,
            models=models,
            multiplier=str(rule["multiplier"]),
            unknown_models=f.rule.unknown_models.value,
            cost_plus=f.rule.cost_plus,
            version=f.version,
        )


class PlanPut(Body):
    name: Text | None = Field(default=None, description="Default: the key.")
    allowances: dict[Allowance, Credits | None] = _closed(
        default_factory=dict,
        description="Credits per period by pool (`*`: every pool); null: unlimited; a pool "
        "that is absent has no allowance.",
    )
    features: list[Identifier] | Literal["*"] = Field(
        default="*", description='The features the plan allows, or `"*"` for all of them.'
    )
    period: Period = Field(
        default="calendar_month",
        description="`calendar_month` (from the 1st, UTC), `anniversary_month`, `30_days`, or "
        "`billing_cycle`: the allowance is issued when the subscription's invoice is paid.",
    )
    rollover: Credits = Field(
        default=0,
        description="How much unused allowance carries into the next period (a cap); 0: none.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Pro",
                    "allowances": {"chat": 20000, "images": None},
                    "features": ["llm.chat", "image.generate"],
                    "period": "calendar_month",
                    "rollover": 5000,
                }
            ]
        }
    )


class PlanOut(BaseModel):
    key: str
    name: str
    allowances: dict[str, int | None]
    features: list[str] | Literal["*"]
    period: str
    rollover: int

    @classmethod
    def of(cls, p: Plan) -> PlanOut:
        return cls(
            key=p.key,
            name=p.name,
            allowances=dict(p.allowances),
            features=ALL_FEATURES if p.features == ALL_FEATURES else sorted(p.features),
            period=p.period.value,
            rollover=p.rollover_cap,
        )


ProviderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class PricesSync(Body):
    providers: list[ProviderId] | None = Field(
        default=None,
        min_length=1,
        description="The catalogue's providers to import (`openai`, `anthropic` …); the "
        "others keep the latest version's prices. Default: every provider.",
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{"providers": ["openai"]}, {}]})


class PriceBookVersionOut(BaseModel):
    version: int
    source: str = Field(description="The catalogue and its version: `genai-prices 0.2.5`.")
    providers: list[str] | None = Field(description="Those imported; null: every provider.")
    prices: int = Field(description="How many model prices the version has.")
    created_at: datetime

    @classmethod
    def of(cls, v: PriceBookVersion) -> PriceBookVersionOut:
        providers = None if v.providers is None else list(v.providers)
        return cls(
            version=v.version,
            source=v.source,
            providers=providers,
            prices=v.prices,
            created_at=v.created_at,
        )


class ModelPriceOut(BaseModel):
    provider: str
    model: str = Field(description="The catalogue's id of the model.")
    unit: str = Field(description="The usage unit priced: `input_tokens`, `cached_tokens` …")
    usd_per_million: str = Field(description="USD per million units, a decimal string.")

    @classmethod
    def of(cls, p: ModelPrice) -> ModelPriceOut:
        return cls(
            provider=p.provider,
            model=p.model,
            unit=p.unit,
            usd_per_million=decimal_text(p.usd_per_million),
        )


class ModelPricesOut(BaseModel):
    version: PriceBookVersionOut | None = Field(description="Null before the first sync.")
    data: list[ModelPriceOut]


class RerateLineOut(BaseModel):
    key: str = Field(description="The account, the model as the usage named it, or `total`.")
    records: int
    credits: int = Field(description="What the records were rated at.")
    rerated_credits: int = Field(description="What they would be rated at under the version.")
    difference: int = Field(description="`rerated_credits - credits`: positive, under-charged.")
    provider_cost: str = Field(description="USD, a decimal string.")
    rerated_provider_cost: str = Field(description="USD under the version, a decimal string.")

    @classmethod
    def of(cls, line: RerateLine) -> RerateLineOut:
        return cls(
            key=line.key,
            records=line.records,
            credits=line.credits,
            rerated_credits=line.rerated_credits,
            difference=line.difference,
            provider_cost=decimal_text(line.provider_cost),
            rerated_provider_cost=decimal_text(line.rerated_provider_cost),
        )


class RerateOut(BaseModel):
    version: int
    since: datetime
    until: datetime
    accounts: list[RerateLineOut]
    models: list[RerateLineOut]
    total: RerateLineOut
    hand_rated: int = Field(description="Records of features not cost-plus: not re-rated.")
    unpriced: int = Field(description="Records the version has no price for: not re-rated.")
    rated_versions: dict[str, list[int]] = Field(
        description="By account: the price-book versions its re-rated records were rated with."
    )

    @classmethod
    def of(cls, r: RerateReport) -> RerateOut:
        return cls(
            version=r.version,
            since=r.since,
            until=r.until,
            accounts=[RerateLineOut.of(a) for a in r.accounts],
            models=[RerateLineOut.of(m) for m in r.models],
            total=RerateLineOut.of(r.total),
            hand_rated=r.hand_rated,
            unpriced=r.unpriced,
            rated_versions={k: list(v) for k, v in r.rated_versions.items()},
        )


class RerateApply(Body):
    since: Timestamp = Field(description="From this time on (inclusive), with a timezone.")
    until: Timestamp = Field(description="Before this time (exclusive), with a timezone.")
    version: int = Field(ge=1, description="The price-book version to re-rate at.")
    account: Identifier | None = Field(default=None, description="Only this account's usage.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"since": "2026-03-01T00:00:00Z", "until": "2026-04-01T00:00:00Z", "version": 2}
            ]
        }
    )


class RerateBookingOut(BaseModel):
    id: str = Field(description="The re-rating booked; each adjustment's `metadata.rerate`.")
    version: int
    since: datetime
    until: datetime
    account: str | None = Field(description="The one account re-rated, or null: every account.")
    difference: int = Field(description="Credits taken from the accounts less those given back.")
    transactions: list[TransactionOut] = Field(
        description="One `adjustment` per account whose usage re-rates at other credits."
    )

    @classmethod
    def of(cls, b: RerateBooking) -> RerateBookingOut:
        return cls(
            id=b.id,
            version=b.version,
            since=b.since,
            until=b.until,
            account=b.account,
            difference=b.difference,
            transactions=[TransactionOut.of(t) for t in b.transactions],
        )
