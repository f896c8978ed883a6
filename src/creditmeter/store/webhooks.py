"""SQL for webhook endpoints and the log of their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from creditmeter.core.webhooks import Delivery, WebhookEndpoint
from creditmeter.store.tables import webhook_deliveries, webhook_endpoints


def _endpoint(row: RowMapping) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        description=row["description"],
        enabled=row["enabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        failures=row["failures"],
        disabled_reason=row["disabled_reason"],
        previous_secret_until=row["previous_secret_until"],
    )


def insert(conn: Connection, endpoint: WebhookEndpoint, secret: str) -> None:
    conn.execute(
        webhook_endpoints.insert().values(
            id=endpoint.id,
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            description=endpoint.description,
            enabled=endpoint.enabled,
            secret=secret,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )
    )


def get(conn: Connection, endpoint_id: str) -> WebhookEndpoint | None:
    query = sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    row = conn.execute(query).mappings().first()
    return None if row is None else _endpoint(row)


def secrets(conn: Connection, endpoint_id: str, now: datetime) -> tuple[str, ...]:
    """The secrets that sign an endpoint's deliveries at ``now``: its own, and the one
    before the last rotation while its overlap lasts; none if it does not exist."""
    t = webhook_endpoints
    query = sa.select(t.c.secret, t.c.previous_secret, t.c.previous_secret_until)
    row = conn.execute(query.where(t.c.id == endpoint_id)).first()
    if row is None:
        return ()
    current, previous, until = row
    if previous is not None and until is not None and now < until:
        return (current, previous)
    return (current,)


def list_all(conn: Connection) -> list[WebhookEndpoint]:
    query = sa.select(webhook_endpoints).order_by(
        webhook_endpoints.c.created_at, webhook_endpoints.c.id
    )
    return [_endpoint(r) for r in conn.execute(query).mappings()]


def update(conn: Connection, endpoint_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint_id).values(values)
    )


def count_failure(conn: Connection, endpoint_id: str) -> int:
    """Add a failed delivery to an endpoint's run; how long the run is now."""
    t = webhook_endpoints
    conn.execute(t.update().where(t.c.id == endpoint_id).values(failures=t.c.failures + 1))
    failures: int = conn.execute(sa.select(t.c.failures).where(t.c.id == endpoint_id)).scalar_one()
    return failures


def delete(conn: Connection, endpoint_id: str) -> bool:
    """Delete an endpoint and its deliveries' log; whether it existed."""
    conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.endpoint_id == endpoint_id))
    gone = conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id))
    return gone.rowcount == 1


def add_delivery(conn: Connection, delivery: Delivery) -> None:
    conn.execute(
        webhook_deliveries.insert().values(
            id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            attempt=delivery.attempt,
            status_code=delivery.status_code,
            latency_ms=delivery.latency_ms,
            error=None if delivery.error is None else delivery.error[:2000],
            next_retry_at=delivery.next_retry_at,
            created_at=delivery.created_at,
        )
    )


def delivery(conn: Connection, endpoint_id: str, delivery_id: str) -> Delivery | None:
    t = webhook_deliveries
    query = sa.select(t).where(t.c.endpoint_id == endpoint_id, t.c.id == delivery_id)
    row = conn.execute(query).mappings().first()
    return None if row is None else _delivery(row)


def deliveries(conn: Connection, endpoint_id: str, limit: int) -> list[Delivery]:
    """An endpoint's delivery attempts, newest first."""
    query = (
        sa.select(webhook_deliveries)
        .where(webhook_deliveries.c.endpoint_id == endpoint_id)
        .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc())
        .limit(limit)
    )
    return [_delivery(r) for r in conn.execute(query).mappings()]


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        attempt=row["attempt"],
        status_code=row["status_code"],
        latency_ms=row["latency_ms"],
        error=row["error"],
        next_retry_at=row["next_retry_at"],
        created_at=row["created_at"],
    )
