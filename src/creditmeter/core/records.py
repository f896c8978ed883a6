"""What the engine returns: immutable records of accounts, holds, usage and the ledger."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from creditmeter.core.errors import AllowanceState
from creditmeter.core.settings import BalanceWarning
from creditmeter.core.types import (
    AccountId,
    AccountStatus,
    Credits,
    FeatureKey,
    GrantId,
    GrantSource,
    HoldId,
    HoldStatus,
    PlanKey,
    PoolName,
    TransactionId,
    TransactionType,
    UsageId,
    wallet,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Account:
    id: AccountId
    name: str
    plan: PlanKey | None
    pending_plan: PlanKey | None
    status: AccountStatus
    created_at: datetime
    period_start: datetime
    period_end: datetime
    overdraft_limit: Credits
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """What enforcement would have refused, reported when enforcement is ``observe``."""

    code: str
    message: str


@dataclass(frozen=True)
class Hold:
    id: HoldId
    account_id: AccountId
    feature: FeatureKey
    credits: Credits
    reserved: Credits
    status: HoldStatus
    created_at: datetime
    expires_at: datetime
    usage_id: UsageId | None = None
    would_refuse: Refused | None = None
    requested: Credits | None = None
    """What a balancing authorize asked for when less was available: the hold is then for
    ``credits``, the part it could reserve. ``None`` for a hold for all it asked."""


@dataclass(frozen=True)
class Charge:
    """The result of a usage charged to an account, one-shot or by settling a hold."""

    usage_id: UsageId
    account_id: AccountId
    feature: FeatureKey
    credits: Credits
    charged: Credits
    debited: Credits
    uncollected: Credits
    available_after: Credits
    transaction_id: TransactionId | None
    hold_id: HoldId | None = None
    warnings: tuple[BalanceWarning, ...] = ()
    would_refuse: Refused | None = None
    hold: Hold | None = None
    """The hold this charge settled, as it is now (settled)."""
    unknown_model: bool = False
    """Priced at the feature's default rates: it has none for the usage's model."""


@dataclass(frozen=True)
class Posting:
    """One leg: credits into (positive) or out of (negative) a ledger account."""

    ledger_account: str
    amount: Credits
    grant_id: GrantId | None = None
    grant_source: GrantSource | None = None


@dataclass(frozen=True)
class Transaction:
    id: TransactionId
    account_id: AccountId
    type: TransactionType
    amount: Credits
    balance_before: Credits
    balance_after: Credits
    description: str
    created_at: datetime
    postings: tuple[Posting, ...] = ()
    usage_id: UsageId | None = None
    hold_id: HoldId | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    purchase_id: str | None = None

    @property
    def wallet_postings(self) -> tuple[Posting, ...]:
        """The postings on the account's own credits, one per grant touched (and one for
        debt taken on or repaid)."""
        own = wallet(self.account_id)
        return tuple(p for p in self.postings if p.ledger_account == own)

    def by_grant_source(self) -> dict[GrantSource | None, Credits]:
        """The account's side of the transaction by the source of the grants it touched
        (``None``: debt): a split charge gives ``{ALLOWANCE: -2000, PURCHASE: -3000}``."""
        split: dict[GrantSource | None, Credits] = {}
        for p in self.wallet_postings:
            split[p.grant_source] = split.get(p.grant_source, 0) + p.amount
        return split


@dataclass(frozen=True)
class GrantResult:
    grant_id: GrantId
    transaction_id: TransactionId
    amount: Credits
    available_after: Credits


@dataclass(frozen=True)
class PoolBalance:
    available: Credits
    allowance: AllowanceState
    unlimited: bool


@dataclass(frozen=True)
class Balance:
    account_id: AccountId
    available: Credits
    held: Credits
    debt: Credits
    allowance: AllowanceState
    period_start: datetime
    period_end: datetime
    purchased_available: Credits
    pools: Mapping[PoolName, PoolBalance]
    warnings: tuple[BalanceWarning, ...]
    status: AccountStatus


@dataclass(frozen=True)
class CheckResult:
    allowed: bool
    cost: Credits
    available: Credits
    reason: str | None
    warnings: tuple[BalanceWarning, ...] = ()


@dataclass(frozen=True)
class UsageRecord:
    id: UsageId
    account_id: AccountId
    feature: FeatureKey
    feature_version: int
    model: str | None
    member: str | None
    quantities: Mapping[str, Any]
    credits: Credits
    charged: Credits
    debited: Credits
    uncollected: Credits
    refunded: Credits
    unlimited: bool
    success: bool
    hold_id: HoldId | None
    created_at: datetime
    metadata: Mapping[str, Any] = field(default_factory=dict)
    unknown_model: bool = False
    """Priced at the feature's default rates: it has none for the model."""
    price_book_version: int | None = None
    """A cost-plus feature's: the price-book version its provider cost was computed with."""
    provider_cost: Decimal | None = None
    """What the usage cost at the provider, in USD: as given, or a cost-plus feature's."""


@dataclass(frozen=True)
class UsageGroup:
    key: str
    count: int
    credits: Credits
    charged: Credits


@dataclass(frozen=True)
class Page(Generic[T]):
    data: tuple[T, ...]
    next_cursor: str | None
