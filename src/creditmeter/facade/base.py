"""What every group of verbs shares: the database, the clock, the units of work."""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import httpx2
from sqlalchemy.engine import Connection

from creditmeter.core.payments import PaymentsNotConfigured
from creditmeter.core.records import Account, Charge
from creditmeter.payments.off import MESSAGE as PAYMENTS_OFF
from creditmeter.payments.off import PaymentsOff
from creditmeter.payments.provider import PaymentProvider
from creditmeter.service.group_commit import GroupCommit
from creditmeter.service.mail import EmailSettings
from creditmeter.service.unit_of_work import UnitsOfWork
from creditmeter.store import secrets as secrets_store
from creditmeter.store.database import Database

T = TypeVar("T")


class MeterBase:
    """The state the verbs share; :class:`~creditmeter.meter.CreditMeter` sets it up."""

    db: Database
    clock: Callable[[], datetime]
    payments: PaymentProvider
    email: EmailSettings | None
    webhook_timeout: float
    webhook_disable_after: int
    webhook_allow_private: bool
    retry_random: random.Random
    charge_observers: list[Callable[[Charge], None]]
    job_listeners: list[Callable[[], None]]
    _units: UnitsOfWork
    _metering: GroupCommit | UnitsOfWork
    _secrets: dict[str, str]
    _http: httpx2.Client | None
    _http_lock: threading.Lock

    def account(self, account_id: str) -> Account:
        return self._units.read_account(account_id, lambda account, _: account.row.account)

    def _now(self) -> datetime:
        return self._units.now()

    def _write(self, use_case: Callable[[Connection, datetime], T]) -> T:
        """``use_case(conn, now)`` in a unit of work of its own."""
        return self._units.run(lambda uow: use_case(uow.conn, uow.now))

    def _selling(self) -> None:
        """Raise ``PaymentsNotConfigured`` before anything is written if nothing is sold."""
        if isinstance(self.payments, PaymentsOff):
            raise PaymentsNotConfigured(PAYMENTS_OFF)

    def _jobs_queued(self) -> None:
        for listener in self.job_listeners:
            listener()

    def _secret(self, name: str) -> str:
        """The database's random secret ``name`` (URL-safe, 256 bits), made on first use
        and the same in every process on the database."""
        found = self._secrets.get(name)
        if found is None:
            with self.db.read() as conn:
                found = secrets_store.get(conn, name)
            if found is None:
                found = self._write(lambda conn, now: _make_secret(conn, now, name))
            self._secrets[name] = found
        return found


def _make_secret(conn: Connection, now: datetime, name: str) -> str:
    found = secrets_store.get(conn, name)  # another process may have made it
    if found is None:
        found = secrets.token_urlsafe(32)
        secrets_store.insert(conn, name, found, now)
    return found
