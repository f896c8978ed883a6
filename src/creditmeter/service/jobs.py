"""The outbox's jobs: each runs at least once, is retried with backoff, and is never lost.

A job is leased before it runs (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers in
many processes take different jobs); a worker that dies mid-job leaves its lease to run
out, and the job runs again. Handlers are idempotent, so a job that runs twice has its
effect once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from creditmeter.core import retries
from creditmeter.core.retries import RetrySchedule
from creditmeter.store.outbox import Job

log = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 12
"""Attempts before a job is given up as dead (kept, with its last error)."""
EVENT_PREFIX: Final = "event."
SCHEDULES: Final[Mapping[str, RetrySchedule]] = {
    "webhook.deliver": retries.DELIVERY,
    "email.deliver": retries.DELIVERY,
}
"""Topics retried on a schedule of their own (deliveries, over about three days); the
others with :func:`backoff`, :data:`MAX_ATTEMPTS` times."""
_random = random.Random()

Handler = Callable[[Mapping[str, Any]], object]


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 2, 4, 8 … seconds, at most an
    hour."""
    return timedelta(seconds=min(2**attempts, 3600))


def retry_at(job: Job, now: datetime, rng: random.Random | None = None) -> datetime | None:
    """When a job that failed runs again; ``None`` once it has had its attempts. ``rng``
    draws the jitter of a scheduled topic's delay (a seeded one in tests)."""
    schedule = SCHEDULES.get(job.topic)
    if schedule is not None:
        delay = schedule.delay(job.attempts, rng or _random)
        return None if delay is None else now + delay
    return None if job.attempts >= MAX_ATTEMPTS else now + backoff(job.attempts)


def run(job: Job, handlers: Mapping[str, Handler]) -> str | None:
    """Run the job's handler (an event's is logged); the error that stopped it, if any."""
    try:
        if job.topic.startswith(EVENT_PREFIX):
            log.info(job.topic, extra={"event": job.topic, **job.payload})
        else:
            handlers[job.topic](job.payload)
    except Exception as error:
        log.warning(
            "job failed", extra={"job": job.id, "topic": job.topic, "attempts": job.attempts}
        )
        return f"{type(error).__name__}: {error}"
    return None
