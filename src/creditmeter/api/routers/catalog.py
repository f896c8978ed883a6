"""The price book and the plans: read by any key, changed by admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from creditmeter.api.auth import Admin, Caller, Meter, Superadmin, actor
from creditmeter.api.schemas.catalog import (
    FeatureOut,
    FeaturePut,
    ModelPriceOut,
    ModelPricesOut,
    PlanOut,
    PlanPut,
    PriceBookVersionOut,
    PricesSync,
    RerateApply,
    RerateBookingOut,
    RerateOut,
)
from creditmeter.api.schemas.common import IdempotencyKey, Page, errors
from creditmeter.api.schemas.ledger import Time
from creditmeter.core.identifiers import IDENTIFIER_PATTERN

router = APIRouter(prefix="/v1", tags=["catalog"])

Key = Annotated[
    str, Path(pattern=IDENTIFIER_PATTERN, description="1 to 255 letters, digits and . _ : @ + = -")
]


@router.get("/features", responses=errors(401))
def list_features(meter: Meter, _: Caller) -> Page[FeatureOut]:
    """The price book, by key: each feature's pool, rates and multiplier, as decimal
    strings, and the version of its price."""
    return Page(data=[FeatureOut.of(f) for f in meter.features()], next_cursor=None)


@router.put("/features/{key}", responses=errors(401, 403, 422))
def put_feature(key: Key, body: FeaturePut, meter: Meter, caller: Superadmin) -> FeatureOut:
    """Create a feature or change its price: a change is a new version, and usage is
    rated with the version in force when it happened. Putting it unchanged keeps the
    version."""
    feature = meter.put_feature(
        key,
        name=body.name,
        pool=body.pool,
        rates=body.rates,
        models=body.models,
        multiplier=body.multiplier,
        unknown_models=body.unknown_models,
        cost_plus=body.cost_plus,
        actor=actor(caller),
    )
    return FeatureOut.of(feature)


@router.get("/plans", responses=errors(401))
def list_plans(meter: Meter, _: Caller) -> Page[PlanOut]:
    """Every plan, by key: its allowances per pool, the features it allows, its period
    and how much unused allowance rolls over."""
    return Page(data=[PlanOut.of(p) for p in meter.plans()], next_cursor=None)


@router.put("/plans/{key}", responses=errors(401, 403, 422))
def put_plan(key: Key, body: PlanPut, meter: Meter, caller: Superadmin) -> PlanOut:
    """Create a plan or replace it. The features it allows apply at once; its allowances
    are issued to the accounts on it from their next period."""
    plan = meter.put_plan(
        key,
        name=body.name,
        allowances=body.allowances,
        features=body.features,
        period=body.period,
        rollover_cap=body.rollover,
        actor=actor(caller),
    )
    return PlanOut.of(plan)


@router.post("/prices/sync", responses=errors(401, 403, 422))
def sync_prices(body: PricesSync, meter: Meter, caller: Superadmin) -> PriceBookVersionOut:
    """Import the price catalogue's model prices (genai-prices, its bundled snapshot) as a
    new price-book version; the latest version when the import changes nothing."""
    version = meter.sync_prices(body.providers, actor=actor(caller))
    return PriceBookVersionOut.of(version)


@router.get("/prices/versions", responses=errors(401, 403))
def price_book_versions(meter: Meter, _: Admin) -> Page[PriceBookVersionOut]:
    """Every price-book version, oldest first."""
    found = meter.price_book_versions()
    return Page(data=[PriceBookVersionOut.of(v) for v in found], next_cursor=None)


@router.get("/rerate", responses=errors(401, 403, 404, 422))
def rerate(
    meter: Meter,
    _: Admin,
    since: Annotated[Time, Query(description="From this time on (inclusive), with a timezone.")],
    until: Annotated[Time, Query(description="Before this time (exclusive), with a timezone.")],
    version: Annotated[int, Query(ge=1, description="The price-book version to re-rate at.")],
    account: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
) -> RerateOut:
    """What the cost-plus usage in the window would be rated at under a price-book
    version, beside what it was rated at: per account, per model and in total. A report;
    nothing is booked."""
    report = meter.rerate(since=since, until=until, to_version=version, account=account)
    return RerateOut.of(report)


@router.post("/rerate/apply", responses=errors(401, 403, 404, 409, 422))
def apply_rerate(
    body: RerateApply,
    meter: Meter,
    caller: Superadmin,
    idempotency_key: IdempotencyKey = None,
) -> RerateBookingOut:
    """Book what `GET /v1/rerate` reports: per account whose usage in the window re-rates
    at other credits, one `adjustment` transaction of the difference (an under-charge
    taken from its grants, debt for what they lack; an over-charge given back as a
    `refund` grant). A window of an account is booked once: one that overlaps a window
    booked before is 409 `already_rerated`, and nothing is booked."""
    booking = meter.apply_rerate(
        since=body.since,
        until=body.until,
        to_version=body.version,
        account=body.account,
        idempotency_key=idempotency_key,
        actor=actor(caller),
    )
    return RerateBookingOut.of(booking)


@router.get("/prices", responses=errors(401, 403, 404, 422))
def model_prices(
    meter: Meter,
    _: Admin,
    version: Annotated[int | None, Query(ge=1, description="Default: the latest.")] = None,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=255)] = None,
) -> ModelPricesOut:
    """A price-book version's model prices, of one provider or model if asked."""
    found, prices = meter.model_prices(version=version, provider=provider, model=model)
    return ModelPricesOut(
        version=None if found is None else PriceBookVersionOut.of(found),
        data=[ModelPriceOut.of(p) for p in prices],
    )
