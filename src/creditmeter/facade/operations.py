"""Background work and maintenance: the outbox's jobs, the sweeper, verification."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import httpx2
from sqlalchemy.engine import Connection

from creditmeter.facade.base import MeterBase
from creditmeter.service import (
    alerts,
    jobs,
    mail,
    payment_events,
    purchases,
    purchasing,
)
from creditmeter.service import settings as settings_service
from creditmeter.service import webhooks as webhooks_service
from creditmeter.service.verify import Violation, verify
from creditmeter.store import accounts, outbox

T = TypeVar("T")


class OperationVerbs(MeterBase):
    def work(self, *, limit: int = 20, lease: timedelta = timedelta(seconds=60)) -> int:
        """Run the jobs that are due (applying payment events, starting recharges,
        delivering events), at most ``limit``; how many ran. A job that fails is tried
        again later with backoff; any number of processes may call this at once."""
        taken = self._write(lambda conn, now: outbox.take(conn, now, lease, limit))
        handlers: dict[str, jobs.Handler] = {
            payment_events.APPLY_JOB: lambda job: self.apply_payment_event(str(job["event_id"])),
            purchases.AUTO_RECHARGE_JOB: lambda job: self.recharge(str(job["purchase_id"])),
        }
        for job in taken:
            if job.topic == webhooks_service.DELIVER_JOB:
                self._deliver(job)
                continue
            if job.topic == mail.DELIVER_JOB:
                self._email(job)
                continue
            error = jobs.run(job, handlers)
            self._write(partial(self._ran, job=job, error=error))
        return len(taken)

    def apply_payment_event(self, event_id: str) -> str:
        """Apply a stored payment event, unless it was applied already; its status
        (``applied``, ``ignored`` or ``flagged``). Run by the worker."""
        return payment_events.apply_stored(self._units, event_id)

    def recharge(self, purchase_id: str) -> None:
        """Charge an auto-recharge's saved card off-session and credit it (or count the
        failure); run by the worker."""
        purchasing.recharge(self._units, self.payments, purchase_id)

    def _ran(self, conn: Connection, now: datetime, *, job: outbox.Job, error: str | None) -> None:
        """Finish a job that ran (fanning an event out to its endpoints and addresses), or
        schedule its retry."""
        if error is None:
            if job.topic.startswith(jobs.EVENT_PREFIX):
                webhooks_service.fan_out(conn, now, job)
                if self.email is not None:
                    mail.fan_out(conn, now, job, self.email)
            outbox.finish(conn, job, now)
        else:
            retry = jobs.retry_at(job, now, self.retry_random)
            outbox.fail(conn, job, error, now, retry)

    def _deliver(self, job: outbox.Job) -> None:
        """Send one event to one endpoint, outside any transaction; then log the attempt
        and finish or reschedule its job together."""
        with self.db.read() as conn:
            to = webhooks_service.target(conn, job, self._now())
        if to is None:
            self._write(lambda conn, now: outbox.finish(conn, job, now))
            return
        answer = webhooks_service.send(
            to,
            job,
            self._now(),
            self.webhook_timeout,
            allow_private=self.webhook_allow_private,
            client=self._webhook_client(),
        )
        self._write(
            lambda conn, now: webhooks_service.record(
                conn, now, job, answer, self.webhook_disable_after, self.retry_random
            )
        )

    def _email(self, job: outbox.Job) -> None:
        """Send one event to one address, outside any transaction; then log the attempt
        and finish or reschedule its job together. Without email settings the job waits
        for them, retried like a server that cannot be reached."""
        if self.email is None:
            error: str | None = "email is not configured (CREDITMETER_SMTP_HOST)"
        else:
            error = mail.attempt(job, self.email)
        self._write(lambda conn, now: mail.record(conn, now, job, error, self.retry_random))

    def _webhook_client(self) -> httpx2.Client:
        """One HTTP client for the deliveries of this meter, made on first use: its
        connections stay open from one delivery to the next."""
        with self._http_lock:
            if self._http is None:
                self._http = webhooks_service.client()
            return self._http

    def jobs(self) -> dict[str, int]:
        """How many of the outbox's jobs are ``pending``, ``done`` and ``dead`` (given up
        after their last attempt, kept with their last error)."""
        with self.db.read() as conn:
            return outbox.counts(conn)

    def sweep(self, *, limit: int = 1000) -> int:
        """Bring idle accounts up to date (expired holds, rollover, expiry) and queue
        ``grant.expiring`` for grants about to expire; returns how many accounts were
        due."""
        with self.db.read() as conn:
            due = accounts.ids_due(conn, self._now(), limit)
        for account_id in due:
            self._units.on_account(account_id, lambda account, _: None)
        self._warn_expiring_grants(limit)
        return len(due)

    def _warn_expiring_grants(self, limit: int) -> int:
        """Queue ``grant.expiring`` (once per grant) for grants that expire within the
        ``grant_expiring_days`` setting; how many were queued."""
        total = 0
        while True:
            queued = self._write(
                lambda conn, now: alerts.warn_expiring_grants(
                    conn, now, settings_service.current(conn), limit
                )
            )
            total += queued
            if queued:
                self._jobs_queued()
            if queued < limit:
                return total

    def verify(self) -> list[Violation]:
        """Every violation of the ledger's invariants in this database (none, normally)."""
        with self.db.read() as conn:
            return verify(conn)
