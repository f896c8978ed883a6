"""Refusals and failures, as a small typed hierarchy with no HTTP in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from creditmeter.core.types import Credits


class CreditMeterError(Exception):
    """Base of every error creditmeter raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CreditMeterError):
    """The request is malformed or names something inconsistent; nothing changed."""

    code = "invalid_request"


class TotalOutOfRange(InvalidRequest):
    """A running total would pass the most it may count; nothing changed."""

    code = "total_out_of_range"


class UnknownModel(InvalidRequest):
    """A feature with per-model rates has none for this model (nor for the catalogue's
    model of that name) and does not fall back to its default rates; nothing changed."""

    code = "unknown_model"

    def __init__(self, model: str, feature: str) -> None:
        super().__init__(
            f"feature {feature!r} has no rates for model {model!r}: add the model's rates, "
            "or set unknown_models='default_rates' to price it at the default rates"
        )
        self.model = model
        self.feature = feature


class NotFound(CreditMeterError):
    code = "not_found"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class IdempotencyConflict(CreditMeterError):
    """The idempotency key was used before with other parameters."""

    code = "idempotency_conflict"

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used with other parameters")
        self.key = key


class AlreadyRerated(CreditMeterError):
    """A re-rating was booked before for usage of the same account and window (or one
    that overlaps it): booking it again would charge or give back the difference twice;
    nothing changed."""

    code = "already_rerated"


class HoldNotPending(CreditMeterError):
    """The hold was already settled, released or expired."""

    code = "hold_not_pending"

    def __init__(self, hold_id: str, status: str) -> None:
        super().__init__(f"hold {hold_id!r} is {status}, not pending")
        self.hold_id = hold_id
        self.status = status


class GrantHeld(CreditMeterError):
    """Pending holds reserve credits of a grant that was asked to be voided."""

    code = "grant_held"

    def __init__(self, grant_id: str, holds: tuple[str, ...]) -> None:
        super().__init__(
            f"grant {grant_id!r} has credits held by pending holds {', '.join(holds)}: "
            "settle or release them first, or void with held='release'"
        )
        self.grant_id = grant_id
        self.holds = holds


class Refusal(CreditMeterError):
    """The account may not do this operation now."""


class FeatureNotInPlan(Refusal):
    code = "feature_not_in_plan"

    def __init__(self, feature: str, plan: str) -> None:
        super().__init__(f"plan {plan!r} does not include feature {feature!r}")
        self.feature = feature
        self.plan = plan


class AccountSuspended(Refusal):
    code = "account_suspended"

    def __init__(self, account_id: str, status: str) -> None:
        super().__init__(f"account {account_id!r} is {status}")
        self.account_id = account_id
        self.status = status


@dataclass(frozen=True)
class AllowanceState:
    """How much of the current period's allowance is used, for one pool or all."""

    used: Credits
    limit: Credits | None
    percentage: int | None

    @property
    def remaining(self) -> Credits | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


class InsufficientCredits(Refusal):
    code = "insufficient_credits"

    def __init__(
        self,
        *,
        required: Credits,
        available: Credits,
        allowance: AllowanceState,
        purchased_available: Credits,
        upgrade_url: str | None = None,
    ) -> None:
        super().__init__(f"{required} credits required, {available} available")
        self.required = required
        self.available = available
        self.allowance = allowance
        self.purchased_available = purchased_available
        self.upgrade_url = upgrade_url
        """Where the account can get more credits (the ``upgrade_url`` setting)."""
