"""Domain words as types."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

Credits = int
AccountId = str
FeatureKey = str
PlanKey = str
PoolName = str
GrantId = str
HoldId = str
UsageId = str
TransactionId = str

ANY_POOL: Final[PoolName] = "*"

MAX_CREDITS: Final[Credits] = 10**15
"""The most credits one amount (a grant, a usage, a limit) may be: far above any real
balance, far below what a 64-bit column holds, and exact as a JSON number."""

MAX_PERIOD_USAGE: Final[Credits] = 10**18
"""The most credits an account may use of an unlimited allowance in one pool and period
(a thousand of the largest usages): the count stays far below 64 bits, and so do the
totals summed from it."""


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    BLOCKED = "blocked"


class GrantSource(StrEnum):
    ALLOWANCE = "allowance"
    ROLLOVER = "rollover"
    BONUS = "bonus"
    PROMOTIONAL = "promotional"
    ADMIN = "admin"
    REFUND = "refund"
    PURCHASE = "purchase"
    AUTO_RECHARGE = "auto_recharge"


PURCHASED_SOURCES: Final = frozenset({GrantSource.PURCHASE, GrantSource.AUTO_RECHARGE})

DEFAULT_PRIORITY: Final[dict[GrantSource, int]] = {
    GrantSource.ALLOWANCE: 10,
    GrantSource.ROLLOVER: 15,
    GrantSource.BONUS: 20,
    GrantSource.PROMOTIONAL: 20,
    GrantSource.ADMIN: 30,
    GrantSource.REFUND: 30,
    GrantSource.PURCHASE: 40,
    GrantSource.AUTO_RECHARGE: 40,
}


class HoldStatus(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"


class Enforcement(StrEnum):
    """What happens when an operation cannot be paid for or is not allowed."""

    ENFORCE = "enforce"
    OBSERVE = "observe"
    OFF = "off"


class PeriodKind(StrEnum):
    CALENDAR_MONTH = "calendar_month"
    ANNIVERSARY_MONTH = "anniversary_month"
    EVERY_30_DAYS = "30_days"
    BILLING_CYCLE = "billing_cycle"
    """Renewed by the payment provider's paid invoice; until one is paid, periods of 30
    days that issue no allowance."""


class TransactionType(StrEnum):
    GRANT = "grant"
    ALLOCATION = "allocation"
    USAGE = "usage"
    EXPIRY = "expiry"
    ROLLOVER = "rollover"
    REFUND = "refund"
    DEBT_REPAYMENT = "debt_repayment"
    PURCHASE = "purchase"
    REVERSAL = "reversal"
    VOID = "void"
    """An admin took the credits left in a grant away (``void_grant``)."""
    ADJUSTMENT = "adjustment"
    """Past usage re-rated under another price-book version: the difference taken from
    the account (into consumption) or given back (out of it) (``apply_rerate``)."""


class SystemAccount(StrEnum):
    """The other side of every posting: where credits come from and go to."""

    ISSUANCE_ALLOWANCE = "issuance:allowance"
    ISSUANCE_PURCHASE = "issuance:purchase"
    ISSUANCE_BONUS = "issuance:bonus"
    ISSUANCE_ADMIN = "issuance:admin"
    CONSUMPTION = "consumption"
    EXPIRY = "expiry"
    REFUND = "refund"
    VOID = "void"
    """Where the credits of voided grants go."""


ISSUER: Final[dict[GrantSource, SystemAccount]] = {
    GrantSource.ALLOWANCE: SystemAccount.ISSUANCE_ALLOWANCE,
    GrantSource.BONUS: SystemAccount.ISSUANCE_BONUS,
    GrantSource.PROMOTIONAL: SystemAccount.ISSUANCE_BONUS,
    GrantSource.ADMIN: SystemAccount.ISSUANCE_ADMIN,
    GrantSource.REFUND: SystemAccount.REFUND,
    GrantSource.PURCHASE: SystemAccount.ISSUANCE_PURCHASE,
    GrantSource.AUTO_RECHARGE: SystemAccount.ISSUANCE_PURCHASE,
}


def wallet(account_id: AccountId) -> str:
    """The ledger account that holds an account's credits."""
    return f"account:{account_id}"
