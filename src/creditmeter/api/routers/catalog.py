"""The price book and the plans: read by any key, changed by admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from creditmeter.api.auth import Caller, Meter, Superadmin, actor
from creditmeter.api.schemas.catalog import FeatureOut, FeaturePut, PlanOut, PlanPut
from creditmeter.api.schemas.common import Page, errors
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
