"""creditmeter: a credit ledger and AI-usage metering service."""

from creditmeter.core.errors import (
    AccountSuspended,
    CreditMeterError,
    FeatureNotInPlan,
    GrantHeld,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    Refusal,
    TotalOutOfRange,
)
from creditmeter.meter import CreditMeter, UsageEvent
from creditmeter.store.database import LockTimeout, Timeouts

__all__ = [
    "AccountSuspended",
    "CreditMeter",
    "CreditMeterError",
    "FeatureNotInPlan",
    "GrantHeld",
    "HoldNotPending",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidRequest",
    "LockTimeout",
    "NotFound",
    "Refusal",
    "Timeouts",
    "TotalOutOfRange",
    "UsageEvent",
]
