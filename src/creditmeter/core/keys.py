"""API keys: who may do what. Keys are shown once and stored only as a digest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from creditmeter.core.types import AccountId


class Role(StrEnum):
    SERVICE = "service"
    """The host app's backend: meters usage, reads every account, creates accounts and
    chooses their plans."""
    ADMIN = "admin"
    """Operator staff: reads everything, suspends and reactivates accounts."""
    SUPERADMIN = "superadmin"
    """Operator staff: everything, including whatever creates credits (grants, refunds,
    plans, prices, packages, overdrafts, settings) and keys."""
    ACCOUNT = "account"
    """One account's own key: its balance, history and usage, nothing else."""


STAFF_RANK = {Role.SERVICE: 1, Role.ADMIN: 2, Role.SUPERADMIN: 3}


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: Role
    account_id: AccountId | None
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    def at_least(self, role: Role) -> bool:
        """Whether this key has ``role`` or a staff role above it (account keys rank none)."""
        return STAFF_RANK.get(self.role, 0) >= STAFF_RANK[role]

    def may_see(self, account_id: AccountId) -> bool:
        return self.role is not Role.ACCOUNT or self.account_id == account_id
