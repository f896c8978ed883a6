"""Portal sessions: one-time links to the customer portal."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from creditmeter.api.schemas.common import Body
from creditmeter.api.schemas.payments import ReturnUrl
from creditmeter.core.portal import PortalSession


class PortalSessionCreate(Body):
    return_url: ReturnUrl | None = Field(
        default=None, description="Where the portal's ‘Back’ link leads: the host app's page."
    )


class PortalSessionOut(BaseModel):
    id: str
    account: str
    url: str = Field(description="The one-time link: open it in the customer's browser.")
    return_url: str | None
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, session: PortalSession, url: str) -> PortalSessionOut:
        return cls(
            id=session.id,
            account=session.account_id,
            url=url,
            return_url=session.return_url,
            created_at=session.created_at,
            expires_at=session.expires_at,
        )
