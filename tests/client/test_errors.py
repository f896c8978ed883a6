from __future__ import annotations

import pytest

from creditmeter import (
    AccountSuspended,
    AlreadyRerated,
    CreditMeterError,
    FeatureNotInPlan,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    TotalOutOfRange,
    UnknownModel,
)
from creditmeter.client import (
    AuthenticationFailed,
    PermissionDenied,
    RemoteError,
    ServiceUnavailable,
)
from creditmeter.client.errors import error_of
from creditmeter.core.errors import AllowanceState
from creditmeter.core.payments import PaymentDeclined, PaymentError


def body(kind: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"type": kind, "message": message, **extra}}


def test_402_is_insufficient_credits_with_its_figures() -> None:
    error = error_of(
        402,
        body(
            "insufficient_credits",
            "6000 credits required, 2750 available",
            required=6000,
            available=2750,
            allowance={"used": 3000, "limit": 3000, "percentage": 100},
            purchased_available=2750,
            upgrade_url="https://example.com/upgrade",
        ),
    )
    assert isinstance(error, InsufficientCredits)
    assert (error.required, error.available, error.purchased_available) == (6000, 2750, 2750)
    assert error.upgrade_url == "https://example.com/upgrade"
    assert error.allowance == AllowanceState(used=3000, limit=3000, percentage=100)
    assert str(error) == error.message == "6000 credits required, 2750 available"


def test_an_unlimited_allowance_in_a_402() -> None:
    error = error_of(
        402,
        body(
            "insufficient_credits",
            "m",
            required=1,
            available=0,
            allowance={"used": 9, "limit": None, "percentage": None},
            purchased_available=0,
        ),
    )
    assert isinstance(error, InsufficientCredits)
    assert error.allowance.limit is None


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected", "fields"),
    [
        (
            404,
            "not_found",
            "account 'acme' not found",
            NotFound,
            {"kind": "account", "key": "acme"},
        ),
        (
            404,
            "not_found",
            'api key "o\'neil" not found',
            NotFound,
            {"kind": "api key", "key": "o'neil"},
        ),
        (404, "not_found", "Not Found", NotFound, {"kind": "resource"}),
        (
            403,
            "feature_not_in_plan",
            "plan 'starter' does not include feature 'llm.chat'",
            FeatureNotInPlan,
            {"plan": "starter", "feature": "llm.chat"},
        ),
        (
            403,
            "account_suspended",
            "account 'acme' is blocked",
            AccountSuspended,
            {"account_id": "acme", "status": "blocked"},
        ),
        (
            409,
            "hold_not_pending",
            "hold 'hold_1' is expired, not pending",
            HoldNotPending,
            {"hold_id": "hold_1", "status": "expired"},
        ),
        (
            409,
            "idempotency_conflict",
            "idempotency key 'k1' was already used with other parameters",
            IdempotencyConflict,
            {"key": "k1"},
        ),
        (
            409,
            "already_rerated",
            "account 'acme': usage from … was re-rated under price book version 2",
            AlreadyRerated,
            {},
        ),
        (402, "payment_declined", "Your card was declined.", PaymentDeclined, {}),
        (502, "payment_provider_error", "Stripe: no such customer", PaymentError, {}),
        (422, "invalid_request", "body.amount: bad", InvalidRequest, {}),
        (422, "total_out_of_range", "at most 10^18 credits", TotalOutOfRange, {}),
        (400, "malformed_json", "the body is not valid JSON", InvalidRequest, {}),
        (401, "unauthenticated", "the API key is not valid", AuthenticationFailed, {"status": 401}),
        (403, "forbidden", "this needs a service key", PermissionDenied, {"status": 403}),
        (503, "unavailable", "retry shortly", ServiceUnavailable, {"status": 503}),
        (500, "http_error", "Internal Server Error", RemoteError, {"type": "http_error"}),
        (405, "method_not_allowed", "Method Not Allowed", RemoteError, {"status": 405}),
    ],
)
def test_each_error_type_becomes_the_library_error(
    status: int,
    kind: str,
    message: str,
    expected: type[CreditMeterError],
    fields: dict[str, object],
) -> None:
    error = error_of(status, body(kind, message))
    assert type(error) is expected
    assert error.message == message
    assert str(error) == message
    for name, value in fields.items():
        assert getattr(error, name) == value


def test_an_unknown_model_names_the_model_and_the_feature() -> None:
    message = "feature 'llm.chat' has no rates for model 'gpt-4.1': add the model's rates"
    error = error_of(422, body("unknown_model", message, model="gpt-4.1", feature="llm.chat"))
    assert type(error) is UnknownModel
    assert (error.model, error.feature, error.message) == ("gpt-4.1", "llm.chat", message)
    assert isinstance(error, InvalidRequest)


def test_an_answer_that_is_not_an_error_body() -> None:
    gateway = error_of(502, None, retry_after="3", reason="Bad Gateway")
    assert isinstance(gateway, ServiceUnavailable)
    assert (gateway.message, gateway.retry_after, gateway.type) == ("Bad Gateway", 3, None)
    odd = error_of(402, {"error": {"type": "insufficient_credits", "message": "short"}})
    assert isinstance(odd, RemoteError)  # a 402 without its figures is not made up
    assert odd.status == 402
    assert isinstance(error_of(418, "teapot"), RemoteError)
