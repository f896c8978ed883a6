"""Portal sessions: a one-time link to the customer portal of one account, asked for by
the host app's backend (as Stripe's customer portal sessions are). The link's token has
256 random bits and is kept only as its SHA-256 digest."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from creditmeter.core.audit import Action, Actor
from creditmeter.core.errors import InvalidRequest, NotFound
from creditmeter.core.ids import new_id
from creditmeter.core.portal import PortalSession
from creditmeter.service import audit
from creditmeter.service.api_keys import digest
from creditmeter.store import accounts, portal_sessions

RETURN_URL_SCHEMES = ("https://", "http://")
MAX_URL = 2000
"""As long as the ``portal_sessions.return_url`` column holds."""


def create(
    conn: Connection,
    now: datetime,
    account_id: str,
    return_url: str | None,
    lifetime: timedelta,
    actor: Actor,
) -> tuple[PortalSession, str]:
    """A new session and its link's token (which exists nowhere else afterwards)."""
    if return_url is not None and (
        not return_url.startswith(RETURN_URL_SCHEMES) or len(return_url) > MAX_URL
    ):
        raise InvalidRequest(
            f"return_url must be an http or https URL of at most {MAX_URL} characters"
        )
    if accounts.get(conn, account_id) is None:
        raise NotFound("account", account_id)
    token = secrets.token_urlsafe(32)
    session = PortalSession(
        id=new_id("ps"),
        account_id=account_id,
        return_url=return_url,
        created_at=now,
        expires_at=now + lifetime,
    )
    portal_sessions.insert(conn, session, digest(token))
    audit.record(
        conn,
        now,
        actor,
        Action.PORTAL_SESSION_CREATED,
        account_id=account_id,
        subject_id=session.id,
        details={"expires_at": session.expires_at.isoformat(), "return_url": return_url},
    )
    return session, token


def open_link(conn: Connection, now: datetime, token: str) -> PortalSession | None:
    """The session of this token, used now; ``None`` if it is unknown, used or expired."""
    return portal_sessions.use(conn, digest(token), now)
