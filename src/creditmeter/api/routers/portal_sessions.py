"""Portal sessions: the host app's backend asks for a one-time link to an account's
customer portal (docs/dashboards.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from creditmeter.api.auth import AccountService, Meter, actor
from creditmeter.api.schemas.common import errors
from creditmeter.api.schemas.portal import PortalSessionCreate, PortalSessionOut

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.post("/{account_id}/portal-sessions", status_code=201, responses=errors(401, 403, 404, 422))
def create_portal_session(
    account_id: str,
    request: Request,
    meter: Meter,
    key: AccountService,
    body: PortalSessionCreate | None = None,
) -> PortalSessionOut:
    """A link that opens the account's customer portal in a browser: usable once, within
    five minutes. Its token is in this response only (stored as a digest)."""
    return_url = body.return_url if body is not None else None
    session, token = meter.create_portal_session(
        account_id, return_url=return_url, actor=actor(key)
    )
    base: str = request.app.state.public_url or str(request.base_url).rstrip("/")
    return PortalSessionOut.of(session, f"{base}/portal/session/{token}")
