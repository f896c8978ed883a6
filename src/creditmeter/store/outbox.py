"""SQL for the transactional outbox: jobs and events written with the change that causes
them, taken by workers with a lease."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditmeter.store.tables import outbox


@dataclass(frozen=True)
class Job:
    id: str
    topic: str
    payload: Mapping[str, Any]
    attempts: int
    """Attempts so far, this one included."""
    created_at: datetime


def enqueue(
    conn: Connection,
    job_id: str,
    topic: str,
    payload: Mapping[str, Any],
    at: datetime,
    *,
    dedupe_key: str | None = None,
) -> bool:
    """Queue a job in the caller's transaction; ``False`` if its ``dedupe_key`` is queued
    already (the job exists, done or not)."""
    if dedupe_key is not None:
        exists = conn.execute(
            sa.select(outbox.c.id).where(outbox.c.dedupe_key == dedupe_key)
        ).first()
        if exists is not None:
            return False
    conn.execute(
        outbox.insert().values(
            id=job_id,
            topic=topic,
            payload=dict(payload),
            dedupe_key=dedupe_key,
            status="pending",
            attempts=0,
            run_at=at,
            created_at=at,
        )
    )
    return True


def payload_of(conn: Connection, dedupe_key: str) -> Mapping[str, Any] | None:
    """The payload of the job queued under ``dedupe_key``, done or not."""
    query = sa.select(outbox.c.payload).where(outbox.c.dedupe_key == dedupe_key)
    found: Mapping[str, Any] | None = conn.execute(query).scalar_one_or_none()
    return found


def take(conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[Job]:
    """Lease up to ``limit`` due jobs to the caller: until the lease ends no other worker
    takes them (``FOR UPDATE SKIP LOCKED`` lets workers take different jobs at once)."""
    due = (
        sa.select(
            outbox.c.id, outbox.c.topic, outbox.c.payload, outbox.c.attempts, outbox.c.created_at
        )
        .where(outbox.c.status == "pending", outbox.c.run_at <= now)
        .order_by(outbox.c.run_at, outbox.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = conn.execute(due).all()
    if not rows:
        return []
    conn.execute(
        outbox.update()
        .where(outbox.c.id.in_([r.id for r in rows]))
        .values(run_at=now + lease, attempts=outbox.c.attempts + 1)
    )
    return [Job(r.id, r.topic, r.payload, r.attempts + 1, r.created_at) for r in rows]


def finish(conn: Connection, job: Job, at: datetime) -> bool:
    """Mark a leased job done, unless its lease was lost (another worker took it after it
    ran out); whether it was marked."""
    done = conn.execute(
        outbox.update()
        .where(outbox.c.id == job.id, outbox.c.attempts == job.attempts)
        .values(status="done", finished_at=at, last_error=None)
    )
    return done.rowcount == 1


def fail(conn: Connection, job: Job, error: str, at: datetime, retry_at: datetime | None) -> None:
    """Record a failed attempt: try again at ``retry_at``, or give up (``None``)."""
    values: dict[str, Any] = {"last_error": error[:2000]}
    if retry_at is None:
        values.update(status="dead", finished_at=at)
    else:
        values["run_at"] = retry_at
    conn.execute(
        outbox.update()
        .where(outbox.c.id == job.id, outbox.c.attempts == job.attempts)
        .values(values)
    )


def counts(conn: Connection) -> dict[str, int]:
    """How many jobs are pending, done and dead."""
    query = sa.select(outbox.c.status, sa.func.count().label("count")).group_by(outbox.c.status)
    found: dict[str, int] = {"pending": 0, "done": 0, "dead": 0}
    found.update({row.status: row.count for row in conn.execute(query)})
    return found
