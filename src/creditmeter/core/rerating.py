"""Re-rating: what past usage of cost-plus features would cost under another price-book
version, beside what it was charged; and, when asked, the difference booked per account
as one ``adjustment`` transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from creditmeter.core.records import Transaction
from creditmeter.core.types import AccountId, Credits


@dataclass(frozen=True)
class RerateLine:
    """The re-rated usage records of one account, one model, or all of them."""

    key: str
    records: int = 0
    credits: Credits = 0
    """What the records were rated at."""
    rerated_credits: Credits = 0
    """What they would be rated at under the other version."""
    provider_cost: Decimal = Decimal(0)
    rerated_provider_cost: Decimal = Decimal(0)

    @property
    def difference(self) -> int:
        """Credits under the other version less those rated: positive is an under-charge."""
        return self.rerated_credits - self.credits

    def add(self, credits: Credits, rerated: Credits, cost: Decimal, recost: Decimal) -> RerateLine:
        return RerateLine(
            self.key,
            self.records + 1,
            self.credits + credits,
            self.rerated_credits + rerated,
            self.provider_cost + cost,
            self.rerated_provider_cost + recost,
        )


@dataclass(frozen=True)
class RerateReport:
    version: int
    since: datetime
    until: datetime
    accounts: list[RerateLine]
    models: list[RerateLine]
    """By the usage's model as it was given."""
    total: RerateLine
    hand_rated: int
    """Records of features rated by their own rates, not the price book: not re-rated."""
    unpriced: int
    """Records of a model or unit that the version has no price for: not re-rated."""
    rated_versions: dict[AccountId, tuple[int, ...]] = field(default_factory=dict)
    """The price-book versions each account's re-rated records were rated with."""


@dataclass(frozen=True)
class RerateBooking:
    """A re-rating booked: one ``adjustment`` transaction per account whose usage in the
    window re-rates at other credits (none for an account whose difference is zero)."""

    id: str
    version: int
    since: datetime
    until: datetime
    account: AccountId | None
    """The one account re-rated, or ``None``: every account."""
    transactions: tuple[Transaction, ...]

    @property
    def difference(self) -> Credits:
        """Credits taken from the accounts less those given back."""
        return -sum(t.amount for t in self.transactions)
