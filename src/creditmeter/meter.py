"""The library: ``CreditMeter``, with verbs named after the domain.

Each verb is one use case in one unit of work (:mod:`creditmeter.service.unit_of_work`):
one database transaction that locks the accounts it changes, brings them up to date,
does its work, stores its result under the idempotency key, if one is given, and commits
once. The verbs live in :mod:`creditmeter.facade`, a module per group; this class puts
them together and holds what they share.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from creditmeter.core.meter import HeldOperation
from creditmeter.core.records import Charge
from creditmeter.core.webhooks import DISABLE_AFTER
from creditmeter.facade.access import AccessVerbs
from creditmeter.facade.accounts import AccountVerbs
from creditmeter.facade.catalog import CatalogVerbs
from creditmeter.facade.metering import MeteringVerbs
from creditmeter.facade.notifications import NotificationVerbs
from creditmeter.facade.operations import OperationVerbs
from creditmeter.facade.payments import PaymentVerbs
from creditmeter.facade.reports import ReportVerbs
from creditmeter.payments.dev import DevProvider
from creditmeter.payments.provider import PaymentProvider
from creditmeter.service.group_commit import GroupCommit
from creditmeter.service.mail import EmailSettings
from creditmeter.service.unit_of_work import UnitOfWork, UnitsOfWork
from creditmeter.store.database import DEFAULT_TIMEOUTS, Database, Timeouts
from creditmeter.store.migrate import upgrade as upgrade_schema

Clock = Callable[[], datetime]
__all__ = ["Clock", "CreditMeter", "HeldOperation", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CreditMeter(
    CatalogVerbs,
    AccountVerbs,
    MeteringVerbs,
    ReportVerbs,
    AccessVerbs,
    NotificationVerbs,
    PaymentVerbs,
    OperationVerbs,
):
    """Credits, allowances, holds and a double-entry ledger on SQLite or PostgreSQL.

    ``CreditMeter()`` uses ``creditmeter.db`` in the working directory; pass a SQLAlchemy
    URL (``postgresql://…``) for PostgreSQL. The schema is migrated on first use unless
    ``migrate=False``. ``timeouts`` bound how long a lock is waited for or kept by a
    process that stopped (:class:`~creditmeter.store.database.Timeouts`).
    ``webhook_timeout`` is the seconds a webhook receiver has to answer;
    ``webhook_disable_after`` the failed deliveries in a row that disable an endpoint;
    ``webhook_allow_private`` lets webhooks go to private and loopback addresses.
    ``group_commit`` applies the authorizes, settles, releases and charges that threads
    ask for at once in one transaction (:mod:`creditmeter.service.group_commit`).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        clock: Clock = utc_now,
        migrate: bool = True,
        pool_size: int = 5,
        payments: PaymentProvider | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        webhook_timeout: float = 10.0,
        webhook_disable_after: int = DISABLE_AFTER,
        retry_random: random.Random | None = None,
        webhook_allow_private: bool = False,
        email: EmailSettings | None = None,
        group_commit: bool = True,
    ) -> None:
        self.db = Database(database_url, pool_size=pool_size, timeouts=timeouts)
        self.clock = clock
        self.webhook_timeout = webhook_timeout
        self.webhook_disable_after = webhook_disable_after
        self.webhook_allow_private = webhook_allow_private
        """Whether webhooks may go to private, loopback, link-local … addresses (off: a
        server that sends webhooks must not be a way into its own network)."""
        self.email = email
        """How events are emailed (SMTP, sender, templates); ``None``: they are not."""
        self._http = None
        self._http_lock = threading.Lock()
        self.retry_random = retry_random or random.Random()
        """Draws the jitter of deliveries' retries (a seeded one makes them known)."""
        self.payments = payments or DevProvider()
        """Where credits are sold: the development provider unless another is given
        (``PaymentsOff()``: nowhere)."""
        self._secrets = {}
        self.payments.connect(self._receive, self._secret)
        self.charge_observers: list[Callable[[Charge], None]] = []
        """Called with every charge (one-shot or settle) once it is committed; a retry
        that replays an idempotency key is not a new charge."""
        self.job_listeners: list[Callable[[], None]] = []
        """Called when jobs were queued that a worker should run soon."""
        self._units = UnitsOfWork(self.db, clock, self._committed, self.payments.name)
        self.group_observers: list[Callable[[int], None]] = []
        """Called with the number of authorizes, settles, releases and charges each of
        their commits applied: 1 for one on its own, more for a group."""
        self._metering = (
            GroupCommit(self._units, committed=self._grouped) if group_commit else self._units
        )
        """Where authorize, settle, release and charge run: grouped with those of other
        threads that ask at once (``group_commit=False``: each in a unit of work of its
        own)."""
        if migrate:
            upgrade_schema(self.db)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self.db.dispose()

    def __enter__(self) -> CreditMeter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _grouped(self, operations: int) -> None:
        for observer in self.group_observers:
            observer(operations)

    def _committed(self, uow: UnitOfWork) -> None:
        """Tell the charge observers of the charges a unit of work made, and the job
        listeners of jobs it queued."""
        for charge in uow.new_charges:
            for observer in self.charge_observers:
                observer(charge)
        if uow.jobs_queued:
            self._jobs_queued()
