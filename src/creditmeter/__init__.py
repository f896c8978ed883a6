"""creditmeter: a credit ledger and AI-usage metering service.

The library's names load the database code on first use, so that ``creditmeter.client``
(HTTP only) does not.
"""

from typing import TYPE_CHECKING, Any

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
    TotalOutOfRange,
    UnknownModel,
)
from creditmeter.core.usage import UsageEvent

if TYPE_CHECKING:
    from creditmeter.meter import CreditMeter
    from creditmeter.store.database import LockTimeout, Timeouts

__all__ = [
    "AccountSuspended",
    "AlreadyRerated",
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
    "UnknownModel",
    "UsageEvent",
]


_DATABASE_NAMES = {
    "CreditMeter": "creditmeter.meter",
    "LockTimeout": "creditmeter.store.database",
    "Timeouts": "creditmeter.store.database",
}


def __getattr__(name: str) -> Any:
    if name in _DATABASE_NAMES:
        import importlib

        return getattr(importlib.import_module(_DATABASE_NAMES[name]), name)
    raise AttributeError(f"module 'creditmeter' has no attribute {name!r}")
