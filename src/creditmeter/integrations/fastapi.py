"""Meter a FastAPI endpoint: ``Depends(require_credits(meter, feature=…, account=…))``.

The dependency authorizes the endpoint's estimate before it runs — a refusal is answered
with its status and the API's error body (402 ``insufficient_credits`` with the figures),
and the endpoint does not run — and settles after it: the usage the endpoint gave
``settle``, else the estimate. An exception from the endpoint releases the hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from creditmeter.api.errors import body_of, status_of
from creditmeter.core.errors import Refusal
from creditmeter.core.records import Charge, Hold
from creditmeter.integrations._metering import Meter, Quantities


class Refused(HTTPException):
    """A refusal as an HTTP answer: its status, and the error body as ``detail``."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(status_of(refusal), detail=body_of(refusal))
        self.refusal = refusal


def install(app: FastAPI) -> None:
    """Answer a refused request with the error body itself, as the creditmeter API does
    (without it, FastAPI answers ``Refused``'s status with the body under ``detail``),
    and so a refusal that a wrapped SDK client raises in an endpoint too."""

    async def refused(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, Refused):
            error = error.refusal
        assert isinstance(error, Refusal)
        return JSONResponse(body_of(error), status_of(error))

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(Refusal, refused)


class HeldRequest:
    """The hold of one metered request; the endpoint may :meth:`settle` its actual usage."""

    def __init__(self, meter: Meter, hold: Hold) -> None:
        self.meter = meter
        self.hold = hold
        self.charge: Charge | None = None

    def settle(self, *, usage: Quantities | None = None, model: str | None = None) -> Charge:
        self.charge = self.meter.settle(self.hold.id, usage=usage, model=model)
        return self.charge


def require_credits(
    meter: Meter,
    *,
    feature: str,
    account: Callable[[Request], str],
    estimate: Quantities | None = None,
    model: str | None = None,
) -> Callable[[Request], Iterator[HeldRequest]]:
    """A dependency that holds ``estimate`` of ``feature`` for the account that
    ``account`` reads from the request (no estimate: one call of the feature)."""

    def held(request: Request) -> Iterator[HeldRequest]:
        try:
            hold = meter.authorize(account(request), feature, estimate=estimate, model=model)
        except Refusal as refusal:
            raise Refused(refusal) from refusal
        call = HeldRequest(meter, hold)
        try:
            yield call
        except BaseException:
            if call.charge is None:
                meter.release(hold.id)
            raise
        if call.charge is None:
            call.settle()

    return held
