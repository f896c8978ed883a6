"""Running the outbox's jobs: at least once each, retried with backoff, never lost.

A job is leased before it runs (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers in
many processes take different jobs); a worker that dies mid-job leaves its lease to run
out, and the job runs again. Handlers are idempotent, so a job that runs twice has its
effect once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from creditmeter.service.payment_events import APPLY_JOB
from creditmeter.service.purchases import AUTO_RECHARGE_JOB
from creditmeter.store import outbox
from creditmeter.store.outbox import Job

if TYPE_CHECKING:
    from creditmeter.meter import CreditMeter

log = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 12
"""Attempts before a job is given up as dead (kept, with its last error)."""
EVENT_PREFIX: Final = "event."

Handler = Callable[["CreditMeter", Mapping[str, Any]], None]


def _apply_event(meter: CreditMeter, payload: Mapping[str, Any]) -> None:
    meter.apply_payment_event(str(payload["event_id"]))


def _recharge(meter: CreditMeter, payload: Mapping[str, Any]) -> None:
    meter.recharge(str(payload["purchase_id"]))


HANDLERS: Final[dict[str, Handler]] = {APPLY_JOB: _apply_event, AUTO_RECHARGE_JOB: _recharge}


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 2, 4, 8 … seconds, at most an
    hour."""
    return timedelta(seconds=min(2**attempts, 3600))


def run_due(meter: CreditMeter, *, limit: int, lease: timedelta) -> int:
    with meter.db.write() as conn:
        taken = outbox.take(conn, meter.clock(), lease, limit)
    for job in taken:
        _run(meter, job)
    return len(taken)


def _run(meter: CreditMeter, job: Job) -> None:
    try:
        if job.topic.startswith(EVENT_PREFIX):
            log.info(job.topic, extra={"event": job.topic, **job.payload})
        else:
            HANDLERS[job.topic](meter, job.payload)
    except Exception as error:
        now = meter.clock()
        retry_at = None if job.attempts >= MAX_ATTEMPTS else now + backoff(job.attempts)
        log.warning(
            "job failed", extra={"job": job.id, "topic": job.topic, "attempts": job.attempts}
        )
        with meter.db.write() as conn:
            outbox.fail(conn, job, f"{type(error).__name__}: {error}", now, retry_at)
        return
    with meter.db.write() as conn:
        outbox.finish(conn, job, meter.clock())


class Worker:
    """Runs due jobs in a daemon thread until :meth:`stop`: at once when the library
    queues one in this process, else every ``interval`` seconds."""

    def __init__(self, meter: CreditMeter, *, interval: float = 1.0, batch: int = 20) -> None:
        self.meter = meter
        self.interval = interval
        self.batch = batch
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="creditmeter-worker", daemon=True)
        meter.job_listeners.append(self.wake)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self.meter.job_listeners.remove(self.wake)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = self.meter.work(limit=self.batch)
            except Exception:  # the database may be away for a while: try again later
                log.exception("taking jobs failed")
                ran = 0
            if ran < self.batch:
                self._wake.wait(self.interval)
                self._wake.clear()
