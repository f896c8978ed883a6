"""One table from the core's typed errors to status codes and the contract's error body:
``{"error": {"type": ..., "message": ...}}`` (402 adds what the refusal carries)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from creditmeter.api.observability import count_refusal
from creditmeter.core.errors import (
    AccountSuspended,
    AlreadyRerated,
    CreditMeterError,
    FeatureNotInPlan,
    GrantHeld,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    Refusal,
    UnknownModel,
)
from creditmeter.core.payments import (
    InvalidSignature,
    PaymentDeclined,
    PaymentError,
    PaymentsNotConfigured,
)
from creditmeter.store.database import LockTimeout


class Unauthenticated(CreditMeterError):
    code = "unauthenticated"


class Forbidden(CreditMeterError):
    code = "forbidden"


class PayloadTooLarge(CreditMeterError):
    code = "payload_too_large"


STATUS: dict[type[CreditMeterError], int] = {
    InvalidRequest: 422,
    UnknownModel: 422,
    Unauthenticated: 401,
    InsufficientCredits: 402,
    Forbidden: 403,
    PayloadTooLarge: 413,
    FeatureNotInPlan: 403,
    AccountSuspended: 403,
    NotFound: 404,
    IdempotencyConflict: 409,
    AlreadyRerated: 409,
    HoldNotPending: 409,
    GrantHeld: 409,
    InvalidSignature: 400,
    PaymentDeclined: 402,
    PaymentsNotConfigured: 503,
    PaymentError: 502,
    LockTimeout: 503,
}
"""The type of a payment provider's failure that is not a declined payment: the provider
refused the request or could not be reached (502)."""


RETRY_AFTER = "1"
"""Seconds a 503 (the database away, a lock not granted in time) asks a client to wait."""


def status_of(error: CreditMeterError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def insufficient_body(error: InsufficientCredits) -> dict[str, Any]:
    return error_body(
        error.code,
        error.message,
        required=error.required,
        available=error.available,
        allowance={
            "used": error.allowance.used,
            "limit": error.allowance.limit,
            "percentage": error.allowance.percentage,
        },
        purchased_available=error.purchased_available,
        upgrade_url=error.upgrade_url,
    )


def body_of(error: CreditMeterError) -> dict[str, Any]:
    if isinstance(error, InsufficientCredits):
        return insufficient_body(error)
    if isinstance(error, GrantHeld):
        return error_body(error.code, error.message, grant=error.grant_id, holds=list(error.holds))
    if isinstance(error, UnknownModel):
        return error_body(error.code, error.message, model=error.model, feature=error.feature)
    return error_body(error.code, error.message)


def install(app: FastAPI) -> None:
    async def domain(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, CreditMeterError)
        if isinstance(error, Refusal):
            count_refusal(error.code)
        headers = None
        if isinstance(error, Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(error, LockTimeout):
            headers = {"Retry-After": RETRY_AFTER}
        return JSONResponse(body_of(error), status_of(error), headers=headers)

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return JSONResponse(error_body("malformed_json", "the body is not valid JSON"), 400)
        details = [
            {"location": ".".join(str(part) for part in p["loc"]), "problem": p["msg"]}
            for p in problems
        ]
        message = "; ".join(f"{d['location']}: {d['problem']}" for d in details)
        return JSONResponse(error_body("invalid_request", message, details=details), 422)

    async def http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        kinds = {404: "not_found", 405: "method_not_allowed", 413: PayloadTooLarge.code}
        kind = kinds.get(error.status_code, "http_error")
        return JSONResponse(error_body(kind, str(error.detail)), error.status_code)

    async def database(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("unavailable", "the database is unavailable; retry shortly"),
            503,
            headers={"Retry-After": RETRY_AFTER},
        )

    app.add_exception_handler(CreditMeterError, domain)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(OperationalError, database)
    app.add_exception_handler(InterfaceError, database)
