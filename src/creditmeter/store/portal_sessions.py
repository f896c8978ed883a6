"""SQL for portal sessions, found by the digest of their link's token."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.portal import PortalSession
from creditmeter.store.tables import portal_sessions


def _session(row: RowMapping) -> PortalSession:
    return PortalSession(
        id=row["id"],
        account_id=row["account_id"],
        return_url=row["return_url"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
    )


def insert(conn: Connection, session: PortalSession, digest: str) -> None:
    conn.execute(
        portal_sessions.insert().values(
            id=session.id,
            digest=digest,
            account_id=session.account_id,
            return_url=session.return_url,
            created_at=session.created_at,
            expires_at=session.expires_at,
        )
    )


def use(conn: Connection, digest: str, at: datetime) -> PortalSession | None:
    """Mark the unused, unexpired session of this digest used and return it; ``None`` if
    there is none. The conditional update makes a link usable once, by one request."""
    row = (
        conn.execute(sa.select(portal_sessions).where(portal_sessions.c.digest == digest))
        .mappings()
        .first()
    )
    if row is None:
        return None
    used = conn.execute(
        portal_sessions.update()
        .where(
            portal_sessions.c.id == row["id"],
            portal_sessions.c.used_at.is_(None),
            portal_sessions.c.expires_at > at,
        )
        .values(used_at=at)
    )
    if used.rowcount != 1:
        return None
    return _session(row)
