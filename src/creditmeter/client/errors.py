"""The service's error bodies as the library's typed errors.

``{"error": {"type": "insufficient_credits", ...}}`` becomes the
:class:`~creditmeter.InsufficientCredits` the library would have raised, with the same
fields, so code written against ``CreditMeter`` handles a remote refusal unchanged. What
only a remote call can meet (a key refused, the service out of reach) is a
:class:`RemoteError`, still a :class:`~creditmeter.CreditMeterError`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from creditmeter.core.errors import (
    AccountSuspended,
    AllowanceState,
    AlreadyRerated,
    CreditMeterError,
    FeatureNotInPlan,
    GrantHeld,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    TotalOutOfRange,
    UnknownModel,
)
from creditmeter.core.payments import PaymentDeclined, PaymentError, PaymentsNotConfigured

_QUOTED = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
_NOT_FOUND = re.compile(rf"^(?P<kind>.+?) {_QUOTED} not found$")
_NOT_IN_PLAN = re.compile(rf"^plan {_QUOTED} does not include feature {_QUOTED}$")
_SUSPENDED = re.compile(rf"^account {_QUOTED} is (?P<status>\w+)$")
_NOT_PENDING = re.compile(rf"^hold {_QUOTED} is (?P<status>\w+), not pending$")
_CONFLICT = re.compile(rf"^idempotency key {_QUOTED} was already used")


class RemoteError(CreditMeterError):
    """An error answered by the service (or met on the way to it) that the library has
    no type for; ``status`` is the HTTP status (``None``: no answer), ``type`` the error
    body's type."""

    code = "remote_error"

    def __init__(self, message: str, *, status: int | None, type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type


class AuthenticationFailed(RemoteError):
    """401: no API key, or one that is not valid or was revoked."""

    code = "unauthenticated"


class PermissionDenied(RemoteError):
    """403: the key's role may not do this (an account key metering, a service key
    changing prices …)."""

    code = "forbidden"


class ServiceUnavailable(RemoteError):
    """The service could not be reached, timed out, or answered 502–504. A call that
    changes credits may or may not have happened: retry it with the same idempotency key."""

    code = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        type: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, status=status, type=type)
        self.retry_after = retry_after


def _text(value: str) -> str:
    unquoted = ast.literal_eval(value)
    return unquoted if isinstance(unquoted, str) else value


def _credits(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"credits must be an integer, not {value!r}")
    return value


def _optional_int(value: object) -> int | None:
    return None if value is None else _credits(value)


def _with_message(error: CreditMeterError, message: str) -> CreditMeterError:
    """The error with the service's own words, which may be more precise than the ones
    its constructor would have written."""
    error.message = message
    error.args = (message,)
    return error


def insufficient(detail: Mapping[str, Any]) -> InsufficientCredits:
    allowance = detail.get("allowance") or {}
    error = InsufficientCredits(
        required=_credits(detail["required"]),
        available=_credits(detail["available"]),
        allowance=AllowanceState(
            used=_credits(allowance.get("used", 0)),
            limit=_optional_int(allowance.get("limit")),
            percentage=_optional_int(allowance.get("percentage")),
        ),
        purchased_available=_credits(detail.get("purchased_available", 0)),
        upgrade_url=detail.get("upgrade_url"),
    )
    _with_message(error, str(detail.get("message") or error.message))
    return error


def domain_error(kind: str, message: str, detail: Mapping[str, Any]) -> CreditMeterError | None:
    """The library's error for an error type, with the fields its message names; ``None``
    for a type the library does not have."""
    if kind == "insufficient_credits":
        return insufficient(detail)
    if kind == "total_out_of_range":
        return TotalOutOfRange(message)
    if kind == "unknown_model":
        unknown = UnknownModel(str(detail["model"]), str(detail["feature"]))
        return _with_message(unknown, message)
    if kind in ("invalid_request", "malformed_json"):
        return InvalidRequest(message)
    if kind == "not_found":
        found = _NOT_FOUND.match(message)
        if found is None:
            return _with_message(NotFound("resource", ""), message)
        return _with_message(NotFound(found["kind"], _text(found[2])), message)
    if kind == "feature_not_in_plan":
        found = _NOT_IN_PLAN.match(message)
        plan, feature = (_text(found[1]), _text(found[2])) if found else ("", "")
        return _with_message(FeatureNotInPlan(feature, plan), message)
    if kind == "account_suspended":
        found = _SUSPENDED.match(message)
        account, status = (_text(found[1]), found["status"]) if found else ("", "suspended")
        return _with_message(AccountSuspended(account, status), message)
    if kind == "hold_not_pending":
        found = _NOT_PENDING.match(message)
        hold, status = (_text(found[1]), found["status"]) if found else ("", "not pending")
        return _with_message(HoldNotPending(hold, status), message)
    if kind == "grant_held":
        held = GrantHeld(str(detail.get("grant", "")), tuple(detail.get("holds") or ()))
        return _with_message(held, message)
    if kind == "idempotency_conflict":
        found = _CONFLICT.match(message)
        return _with_message(IdempotencyConflict(_text(found[1]) if found else ""), message)
    if kind == "already_rerated":
        return AlreadyRerated(message)
    if kind == "payment_declined":
        return PaymentDeclined(message)
    if kind == "payment_provider_error":
        return PaymentError(message)
    if kind == "payments_not_configured":
        return PaymentsNotConfigured(message)
    return None


def error_of(
    status: int, body: object, *, retry_after: str | None = None, reason: str = ""
) -> CreditMeterError:
    """The error a response of ``status`` with (decoded) ``body`` stands for."""
    detail: Mapping[str, Any] = {}
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        detail = body["error"]
    kind = str(detail.get("type") or "")
    message = str(detail.get("message") or reason or f"HTTP {status}")
    try:
        known = domain_error(kind, message, detail)
    except (KeyError, ValueError, SyntaxError):
        known = None  # a body that does not carry what its type promises
    if known is not None:
        return known
    if status == 401:
        return AuthenticationFailed(message, status=status, type=kind or None)
    if status == 403:
        return PermissionDenied(message, status=status, type=kind or None)
    if status in (502, 503, 504):
        seconds = int(retry_after) if retry_after and retry_after.isdigit() else None
        return ServiceUnavailable(message, status=status, type=kind or None, retry_after=seconds)
    if status == 404:
        return _with_message(NotFound("resource", ""), message)
    return RemoteError(message, status=status, type=kind or None)
