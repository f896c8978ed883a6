"""What a use case does when the database fails it, on both engines: it runs again from
the start when the database rolled it back for a reason of the moment, raises
``LockTimeout`` when a lock was not granted within the lock timeout, and passes anything
else on. The decision is made by PostgreSQL's SQLSTATE or SQLite's result code, never by
the words of the message, which change with the server's language (the messages below
are PostgreSQL's in French)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from creditmeter import CreditMeter
from creditmeter.service.unit_of_work import ATTEMPTS
from creditmeter.store import accounts
from creditmeter.store.database import LockTimeout, Timeouts
from tests.conftest import Clock

Outcome = Literal["run again", "busy", "raised"]


def psycopg_error(sqlstate: str, message: str) -> DBAPIError:
    """The error psycopg raises for ``sqlstate``, as SQLAlchemy raises it."""
    driver_error = psycopg.errors.lookup(sqlstate)(message)
    assert driver_error.sqlstate == sqlstate
    wrapped = DBAPIError.instance("SELECT …", None, driver_error, psycopg.Error)
    assert isinstance(wrapped, DBAPIError)
    return wrapped


def sqlite_error(code: int, name: str, message: str) -> DBAPIError:
    """A ``sqlite3`` error with ``code`` (as the module sets it), as SQLAlchemy raises it."""
    driver_error = sqlite3.OperationalError(message)
    driver_error.sqlite_errorcode = code
    driver_error.sqlite_errorname = name
    wrapped = DBAPIError.instance("SELECT …", None, driver_error, sqlite3.Error)
    assert isinstance(wrapped, DBAPIError)
    return wrapped


@dataclass(frozen=True)
class Case:
    error: DBAPIError
    outcome: Outcome


CASES: dict[str, Case] = {
    "postgresql 40P01 deadlock": Case(psycopg_error("40P01", "interblocage détecté"), "run again"),
    "postgresql 40001 serialization failure": Case(
        psycopg_error(
            "40001", "n'a pas pu sérialiser un accès à cause d'une mise à jour en parallèle"
        ),
        "run again",
    ),
    "postgresql 25P03 session ended idle in its transaction": Case(
        psycopg_error(
            "25P03",
            "arrêt de la connexion à cause du délai d'inactivité dans une transaction",
        ),
        "run again",
    ),
    "postgresql 55P03 lock timeout": Case(
        psycopg_error(
            "55P03", "annulation de la requête à cause du délai écoulé pour l'obtention des verrous"
        ),
        "busy",
    ),
    "postgresql 57014 statement timeout": Case(
        psycopg_error("57014", "annulation de la requête à cause du délai écoulé"), "raised"
    ),
    "postgresql 57P01 server shut down": Case(
        psycopg_error("57P01", "arrêt des connexions suite à la demande de l'administrateur"),
        "raised",
    ),
    "sqlite 5 SQLITE_BUSY": Case(sqlite_error(5, "SQLITE_BUSY", "database is locked"), "busy"),
    "sqlite 773 SQLITE_BUSY_TIMEOUT": Case(
        sqlite_error(773, "SQLITE_BUSY_TIMEOUT", "database is locked"), "busy"
    ),
    "sqlite 517 SQLITE_BUSY_SNAPSHOT": Case(
        sqlite_error(517, "SQLITE_BUSY_SNAPSHOT", "database is locked"), "run again"
    ),
    "sqlite 261 SQLITE_BUSY_RECOVERY": Case(
        sqlite_error(261, "SQLITE_BUSY_RECOVERY", "database is locked"), "run again"
    ),
    "sqlite 6 SQLITE_LOCKED": Case(
        sqlite_error(6, "SQLITE_LOCKED", "database table is locked"), "run again"
    ),
    "sqlite 262 SQLITE_LOCKED_SHAREDCACHE": Case(
        sqlite_error(262, "SQLITE_LOCKED_SHAREDCACHE", "database table is locked"), "run again"
    ),
    "sqlite 518 SQLITE_LOCKED_VTAB": Case(
        sqlite_error(518, "SQLITE_LOCKED_VTAB", "database table is locked"), "run again"
    ),
    "sqlite 10 SQLITE_IOERR": Case(sqlite_error(10, "SQLITE_IOERR", "disk I/O error"), "raised"),
    "sqlite 13 SQLITE_FULL": Case(
        sqlite_error(13, "SQLITE_FULL", "database or disk is full"), "raised"
    ),
}


@pytest.fixture
def acme(meter: CreditMeter) -> str:
    meter.put_feature("chat", rates={"calls": 1})
    meter.create_account("acme")
    meter.grant("acme", 100, source="purchase")
    return "acme"


@contextmanager
def failing_lock(
    monkeypatch: pytest.MonkeyPatch, error: Exception, *, times: int
) -> Iterator[list[int]]:
    """The account's lock fails with ``error`` the first ``times`` times it is taken;
    yields the number of times it was asked for."""
    real = accounts.lock_with_grants_and_key
    calls = [0]

    def lock_with_grants_and_key(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(accounts, "lock_with_grants_and_key", lock_with_grants_and_key)
    yield calls


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_use_case_the_database_failed_runs_again_only_if_rolled_back_for_a_moment(
    meter: CreditMeter, acme: str, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    with failing_lock(monkeypatch, case.error, times=1) as calls:
        if case.outcome == "run again":
            charged = meter.charge(acme, "chat", credits=7)
            assert calls == [2]
            assert [u.id for u in meter.usage(acme).data] == [charged.usage_id]
            assert meter.balance(acme).available == 93
            return
        expected = LockTimeout if case.outcome == "busy" else type(case.error)
        with pytest.raises(expected) as raised:
            meter.charge(acme, "chat", credits=7)
    assert calls == [1]
    if isinstance(raised.value, LockTimeout):
        assert raised.value.__cause__ is case.error
        assert raised.value.code == "busy"
    else:
        assert raised.value is case.error
    assert meter.balance(acme).available == 100
    assert not meter.usage(acme).data


def test_a_use_case_the_database_keeps_failing_gives_up_after_its_attempts(
    meter: CreditMeter, acme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadlock = CASES["postgresql 40P01 deadlock"].error
    with (
        failing_lock(monkeypatch, deadlock, times=ATTEMPTS) as calls,
        pytest.raises(DBAPIError) as raised,
    ):
        meter.charge(acme, "chat", credits=7)
    assert raised.value is deadlock
    assert calls == [ATTEMPTS]
    assert meter.balance(acme).available == 100


@contextmanager
def account_locked(url: str, account_id: str) -> Iterator[None]:
    """Another connection holds ``account_id``'s lock during the block: its row's on
    PostgreSQL, the database's write lock on SQLite."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        other = sqlite3.connect(parsed.database, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        finally:
            other.close()
        return
    engine = sa.create_engine(url, pool_size=1)
    try:
        with engine.connect() as conn, conn.begin():
            locked = conn.exec_driver_sql(
                "SELECT id FROM accounts WHERE id = %(id)s FOR UPDATE", {"id": account_id}
            )
            assert locked.scalar_one() == account_id
            yield
    finally:
        engine.dispose()


@contextmanager
def counting_writes(meter: CreditMeter, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Yields how many write transactions ``meter`` began."""
    real = meter.db.write
    count = [0]

    def write() -> Any:
        count[0] += 1
        return real()

    monkeypatch.setattr(meter.db, "write", write)
    yield count


def test_a_lock_not_granted_within_the_lock_timeout_is_busy_and_not_waited_for_again(
    migrated_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real wait: the account's lock held by another connection (on SQLite, the
    database's), which lets go of it in 30 s at the latest, should the charge wait."""
    with CreditMeter(migrated_url, clock=clock, timeouts=Timeouts(lock=0.2)) as meter:
        meter.put_feature("chat", rates={"calls": 1})
        meter.create_account("acme")
        meter.grant("acme", 100, source="purchase")
        with counting_writes(meter, monkeypatch) as writes, account_locked(migrated_url, "acme"):
            with pytest.raises(LockTimeout, match=r"not granted within 0\.2 s") as raised:
                meter.charge("acme", "chat", credits=7, idempotency_key="k1")
            assert writes == [1]
        assert isinstance(raised.value.__cause__, DBAPIError)
        assert meter.balance("acme").available == 100
        assert not meter.usage("acme").data
        # The same call again, once the lock is free, is applied once.
        charged = meter.charge("acme", "chat", credits=7, idempotency_key="k1")
        assert meter.balance("acme").available == 93
        assert [u.id for u in meter.usage("acme").data] == [charged.usage_id]


def test_a_thread_waits_for_its_turn_on_an_account_up_to_the_lock_timeout(
    migrated_url: str, clock: Clock
) -> None:
    """Of the threads of one meter, one at a time waits for an account's lock in the
    database, the others for their turn in the process (on SQLite, for the process's
    writer): that wait is bounded too."""
    with CreditMeter(migrated_url, clock=clock, timeouts=Timeouts(lock=0.2)) as meter:
        meter.put_feature("chat", rates={"calls": 1})
        meter.create_account("acme")
        meter.grant("acme", 100, source="purchase")
        in_turn, leave = threading.Event(), threading.Event()

        def hold_the_turn() -> None:
            with meter.db.write(), meter.db.account_locks("acme"):
                in_turn.set()
                assert leave.wait(timeout=30)

        holder = threading.Thread(target=hold_the_turn)
        holder.start()
        try:
            assert in_turn.wait(timeout=30)
            with pytest.raises(LockTimeout, match=r"not granted within 0\.2 s"):
                meter.charge("acme", "chat", credits=7)
        finally:
            leave.set()
            holder.join(timeout=30)
        assert meter.balance("acme").available == 100
        meter.charge("acme", "chat", credits=7)
        assert meter.balance("acme").available == 93
