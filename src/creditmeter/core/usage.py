"""A usage to charge, as the library, the client and a batch take it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class UsageEvent:
    """One usage to charge with ``charge_many``."""

    account_id: str
    feature: str
    usage: Mapping[str, int | str | Decimal] | None = None
    credits: int | None = None
    model: str | None = None
    member: str | None = None
    metadata: Mapping[str, Any] | None = None
    provider_cost: Decimal | None = None
    idempotency_key: str | None = None

    def params(self) -> dict[str, Any]:
        """What makes two charges the same, for their idempotency key."""
        return {
            "account": self.account_id,
            "feature": self.feature,
            "usage": self.usage,
            "credits": self.credits,
            "model": self.model,
            "member": self.member,
            "metadata": self.metadata,
            "provider_cost": self.provider_cost,
        }
