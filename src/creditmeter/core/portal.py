"""Portal sessions: one-time links that open the customer portal for one account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from creditmeter.core.types import AccountId

LINK_LIFETIME: Final = timedelta(minutes=5)
"""How long a portal link may wait to be opened."""
SESSION_LIFETIME: Final = timedelta(hours=1)
"""How long the browser session an opened link starts lasts."""


@dataclass(frozen=True)
class PortalSession:
    """A link to the portal of ``account_id``, usable once before ``expires_at``."""

    id: str
    account_id: AccountId
    return_url: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
