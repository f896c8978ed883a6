"""Metering: holds (authorize → settle / release), one-shot usage, batches of usage and
price checks. Each endpoint is one call of the library, answered with its response model
serialized once (``answer``), a batch with the plain data of its results (``answer_data``):
these are the calls made for every operation a customer meters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from creditmeter.api.auth import AccountService, Meter, Service
from creditmeter.api.errors import body_of, status_of
from creditmeter.api.lean import LeanRoute
from creditmeter.api.observability import count_refusal
from creditmeter.api.schemas.common import IdempotencyKey, Page, answer, answer_data, errors
from creditmeter.api.schemas.metering import (
    BatchOut,
    CheckOut,
    CheckRequest,
    HoldCreate,
    HoldOut,
    HoldSettle,
    SettleOut,
    UsageBatch,
    UsageCreate,
    UsageOut,
    batch_error_data,
    batch_usage_data,
    decimal_or_none,
)
from creditmeter.core.errors import CreditMeterError, Refusal
from creditmeter.core.records import Charge

router = APIRouter(tags=["metering"], route_class=LeanRoute)


@router.post("/v1/holds", response_model=HoldOut, responses=errors(401, 402, 403, 404, 409, 422))
def authorize(
    body: HoldCreate, meter: Meter, _: Service, idempotency_key: IdempotencyKey = None
) -> Response:
    """Reserve the price of an estimate against the account's grants, in consumption
    order, until it is settled or released or its ttl runs out; 402 if the account cannot
    pay for it. A `balancing` hold reserves what there is up to the estimate, and is 402
    only when there is nothing."""
    hold = meter.authorize(
        body.account,
        body.feature,
        estimate=body.estimate,
        credits=body.credits,
        model=body.model,
        member=body.member,
        ttl=body.ttl,
        metadata=body.metadata,
        balancing=body.balancing,
        idempotency_key=idempotency_key,
    )
    return answer(HoldOut.of(hold))


@router.get("/v1/holds/{hold_id}", response_model=HoldOut, responses=errors(401, 403, 404))
def get_hold(hold_id: str, meter: Meter, _: Service) -> Response:
    """A hold as it is now; one past its expiry is released and reported `expired`."""
    return answer(HoldOut.of(meter.hold(hold_id)))


@router.get("/v1/accounts/{account_id}/holds", responses=errors(401, 403, 404))
def list_pending_holds(account_id: str, meter: Meter, _: AccountService) -> Page[HoldOut]:
    """The account's pending holds that are not past their expiry, oldest first (at most
    100): what its `held` credits are reserved for."""
    found = meter.pending_holds_of(account_id, limit=100)
    return Page(data=[HoldOut.of(h) for h in found], next_cursor=None)


@router.post(
    "/v1/holds/{hold_id}/settle",
    response_model=SettleOut,
    responses=errors(401, 403, 404, 409, 422),
)
def settle(
    hold_id: str,
    body: HoldSettle,
    meter: Meter,
    _: Service,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Charge the actual usage: from the held credits first, then from any other credits
    if it cost more than the estimate; the rest of the hold is released. A hold that is
    no longer pending is 409 `hold_not_pending`."""
    charge = meter.settle(
        hold_id,
        usage=body.usage,
        credits=body.credits,
        model=body.model,
        member=body.member,
        success=body.success,
        metadata=body.metadata,
        provider_cost=decimal_or_none(body.provider_cost),
        idempotency_key=idempotency_key,
    )
    # A settle replayed from a key stored by an older version has no hold: read it.
    return answer(SettleOut.of(charge, charge.hold or meter.hold(hold_id)))


@router.post(
    "/v1/holds/{hold_id}/release", response_model=HoldOut, responses=errors(401, 403, 404, 409)
)
def release(
    hold_id: str, meter: Meter, _: Service, idempotency_key: IdempotencyKey = None
) -> Response:
    """Return all of a hold's credits: the operation did not happen and costs nothing."""
    return answer(HoldOut.of(meter.release(hold_id, idempotency_key=idempotency_key)))


@router.post("/v1/usage", response_model=UsageOut, responses=errors(401, 402, 403, 404, 409, 422))
def record_usage(
    body: UsageCreate, meter: Meter, _: Service, idempotency_key: IdempotencyKey = None
) -> Response:
    """Record a usage and charge it in one step; 402 if the account cannot pay for it."""
    event = body.event(idempotency_key)
    return answer(UsageOut.of(meter.charge(event.account_id, event.feature, **event.fields())))


@router.post("/v1/usage/batch", response_model=BatchOut, responses=errors(401, 403, 422))
def record_usage_batch(body: UsageBatch, meter: Meter, _: Service) -> Response:
    """Up to 1,000 one-shot usages, each charged as by itself under its own idempotency
    key (so the batch takes no `Idempotency-Key` header and is retried safely as a whole),
    written in one database transaction. Each result has the status and the
    body that `POST /v1/usage` would have answered the event with: a refused event does
    not stop the others. A batch that is not valid as a whole (no events or more than
    1,000, a malformed event) is 422 and changes nothing."""
    outcomes = meter.charge_many([e.event() for e in body.events])
    return answer_data({"results": [_batch_result(i, o) for i, o in enumerate(outcomes)]})


@router.post(
    "/v1/accounts/{account_id}/check",
    response_model=CheckOut,
    responses=errors(401, 403, 404, 422),
)
def check(account_id: str, body: CheckRequest, meter: Meter, _: AccountService) -> Response:
    """Would this usage be allowed now, and what would it cost? Changes nothing."""
    result = meter.check(
        account_id, body.feature, usage=body.usage, credits=body.credits, model=body.model
    )
    return answer(CheckOut.of(result))


def _batch_result(index: int, outcome: Charge | CreditMeterError) -> dict[str, Any]:
    if isinstance(outcome, CreditMeterError):
        if isinstance(outcome, Refusal):
            count_refusal(outcome.code)
        return batch_error_data(index, status_of(outcome), body_of(outcome)["error"])
    return batch_usage_data(index, outcome)
