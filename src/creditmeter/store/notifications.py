"""SQL for accounts' notification preferences and the log of email deliveries."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.core.notifications import NotificationPreferences
from creditmeter.store.tables import email_deliveries, notification_preferences


def get(conn: Connection, account_id: str) -> NotificationPreferences | None:
    t = notification_preferences
    row = conn.execute(sa.select(t).where(t.c.account_id == account_id)).mappings().first()
    if row is None:
        return None
    return NotificationPreferences(
        account_id=row["account_id"],
        emails=tuple(row["emails"]),
        channels={k: tuple(v) for k, v in row["channels"].items()},
        updated_at=row["updated_at"],
    )


def put(conn: Connection, preferences: NotificationPreferences) -> None:
    t = notification_preferences
    values = {
        "emails": list(preferences.emails),
        "channels": {k: list(v) for k, v in preferences.channels.items()},
        "updated_at": preferences.updated_at,
    }
    changed = conn.execute(t.update().where(t.c.account_id == preferences.account_id), values)
    if changed.rowcount == 0:
        conn.execute(t.insert().values(account_id=preferences.account_id, **values))


def add_delivery(
    conn: Connection,
    delivery_id: str,
    *,
    event_id: str,
    event_type: str,
    account_id: str | None,
    recipient: str,
    attempt: int,
    error: str | None,
    next_retry_at: datetime | None,
    created_at: datetime,
) -> None:
    conn.execute(
        email_deliveries.insert().values(
            id=delivery_id,
            event_id=event_id,
            event_type=event_type,
            account_id=account_id,
            recipient=recipient,
            attempt=attempt,
            error=None if error is None else error[:2000],
            next_retry_at=next_retry_at,
            created_at=created_at,
        )
    )


def deliveries(conn: Connection, event_id: str) -> list[dict[str, object]]:
    """The attempts to email an event, oldest first."""
    t = email_deliveries
    query = sa.select(t).where(t.c.event_id == event_id).order_by(t.c.created_at, t.c.id)
    return [dict(row) for row in conn.execute(query).mappings()]
