"""The unit of work: one use case's transaction, from its first statement to its commit.

A use case is a plain function of a :class:`UnitOfWork` and its arguments, or of an
account the unit of work locked (a :class:`LockedAccount`) and the settings in force. The
use case reads and changes; the unit of work owns everything around it, in one place:

- the transaction, and the one commit at its end (with the writes, in one round trip on
  PostgreSQL);
- the account lock: this process's lock on the account, then its row lock, the account
  brought up to date first (expired holds, an ended period, expired grants: that
  maintenance is committed by itself, so a refusal that follows cannot undo it);
- idempotency: a keyed call's first result looked up under the lock and stored with the
  commit;
- the outbox: whether the use case queued jobs that a worker should run soon;
- and, in :class:`Transactions`, the retries and what is told after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from creditmeter.core.errors import NotFound
from creditmeter.core.grants import Grant
from creditmeter.core.records import Charge
from creditmeter.core.serialization import to_json
from creditmeter.core.settings import Settings
from creditmeter.service import alerts, idempotency, purchases
from creditmeter.service import settings as settings_service
from creditmeter.service.locked_account import LockedAccount, PendingWrites
from creditmeter.service.maintenance import bring_up_to_date
from creditmeter.store import accounts, database, holds
from creditmeter.store import idempotency as idempotency_store
from creditmeter.store.accounts import AccountRow
from creditmeter.store.database import Database, pipelined
from creditmeter.store.errors import ConcurrentUpdate
from creditmeter.store.idempotency import StoredResult

T = TypeVar("T")
AccountUseCase = Callable[[LockedAccount, Settings], T]
"""A use case on one locked account: what it returns is the verb's result."""
ATTEMPTS = 5
"""Tries of a use case that a concurrent writer or the moment refused."""


@dataclass(frozen=True)
class IdempotencyKey(Generic[T]):
    """A caller's idempotency key, the operation and parameters it stands for, and the
    type of the result stored under it."""

    key: str
    operation: str
    params: Mapping[str, Any]
    result: type[T]
    owner: str = idempotency_store.OPERATOR

    @cached_property
    def fingerprint(self) -> str:
        return idempotency.fingerprint(self.operation, self.params)


@dataclass
class Caches:
    """What the units of work of one meter remember between them, each kept for the
    version of the data it was read at (read with the account it is used for)."""

    _settings: tuple[int, Settings] | None = None
    _catalog: tuple[int, dict[tuple[str, str], object]] | None = None

    def settings(self, conn: Connection, row: AccountRow) -> Settings:
        """The settings in force: those remembered if the version read with ``row`` is
        theirs, else read now and remembered."""
        remembered = self._settings
        if remembered is None or remembered[0] != row.settings_version:
            remembered = self._settings = settings_service.versioned(conn)
        return remembered[1]

    def catalog(self, row: AccountRow) -> dict[tuple[str, str], object] | None:
        """The features and plans remembered for the catalog's version read with
        ``row``: none yet when it changed."""
        if row.catalog_version is None:
            return None
        remembered = self._catalog
        if remembered is None or remembered[0] != row.catalog_version:
            remembered = self._catalog = (row.catalog_version, {})
        return remembered[1]


class UnitOfWork:
    """One use case's transaction on ``conn``, at ``now``."""

    def __init__(
        self,
        db: Database,
        conn: Connection,
        now: datetime,
        caches: Caches,
        held: ExitStack,
        payment_provider: str,
    ) -> None:
        self.db = db
        self.conn = conn
        self.now = now
        self.jobs_queued = False
        """Whether the use case queued jobs that a worker should run soon."""
        self.new_charges: list[Charge] = []
        """The charges it made (not replayed), to tell their observers after the commit."""
        self._caches = caches
        self._held = held
        self._payment_provider = payment_provider
        self._saving: list[LockedAccount] = []
        self._keys: list[tuple[IdempotencyKey[Any], Any]] = []
        self._pending_writes: PendingWrites | None = None

    # The account lock.

    def lock(self, account_id: str) -> LockedAccount:
        """The account, locked until the commit and brought up to date."""
        account, _ = self._lock(account_id, None)
        return account

    def lock_many(
        self, account_ids: Sequence[str], keys: Sequence[str] = ()
    ) -> tuple[dict[str, LockedAccount], dict[str, StoredResult]]:
        """The accounts of these ids that exist, locked in the order of their ids and
        brought up to date (they share one write of each table at the commit), and what
        is stored under the operator's ``keys``, read under the locks."""
        ids = sorted(set(account_ids))
        self._held.enter_context(self.db.account_locks(*ids))
        found, stored = accounts.lock_many_with_grants_and_keys(self.conn, ids, keys)
        for account_id, (row, loaded) in found.items():
            if self.now >= row.due_at:
                self._bring_up_to_date(row, loaded)
                found[account_id] = self._relocked(account_id)
        self._pending_writes = self._pending_writes or PendingWrites()
        locked = {
            account_id: self._locked_account(row, loaded, self._pending_writes)
            for account_id, (row, loaded) in found.items()
        }
        return locked, stored

    def settings_of(self, account: LockedAccount) -> Settings:
        """The settings in force, remembered for the version read with the account."""
        return self._caches.settings(self.conn, account.row)

    @property
    def settings(self) -> Settings:
        """The settings in force, read now."""
        return settings_service.current(self.conn)

    # Idempotency.

    def replay(self, key: IdempotencyKey[T] | None) -> T | None:
        """The first result stored under ``key``; ``None`` for a new key (or none)."""
        return None if key is None else replay(self.conn, key)

    def remember(self, key: IdempotencyKey[T], result: T) -> Any:
        """Store ``result`` under ``key`` with the commit; the JSON it is stored as."""
        stored = to_json(result)
        self._keys.append((key, stored))
        return stored

    def once(self, key: IdempotencyKey[T] | None, use_case: Callable[[UnitOfWork], T]) -> T:
        """``use_case``, its result stored under ``key``; the first result of a key used
        before, without running it."""
        first = self.replay(key)
        if first is not None:
            return first
        outcome = use_case(self)
        if key is not None:
            self.remember(key, outcome)
        return outcome

    # The use case on one account.

    def on_account(
        self,
        account_id: str,
        use_case: AccountUseCase[T],
        key: IdempotencyKey[T] | None = None,
        *,
        spends: bool = False,
    ) -> T:
        """``use_case`` on the account, locked and brought up to date; an alert checked
        after it (and an auto-recharge if it ``spends``), its changes saved with the
        commit. A key used before returns its first result and changes nothing."""
        account, stored = self._lock(account_id, key)
        if key is not None:
            first = idempotency.first_result(
                key.key, stored, key.operation, key.fingerprint, key.result
            )
            if first is not None:
                return first
        settings = self.settings_of(account)
        outcome = use_case(account, settings)
        if spends:
            self.recharge_if_low(account, settings)
        self.check_alerts(account, settings)
        self.save(account)
        if isinstance(outcome, Charge):
            self.new_charges.append(outcome)
        if key is not None:
            self.remember(key, outcome)
        return outcome

    def on_hold(
        self,
        hold_id: str,
        use_case: Callable[[LockedAccount, Settings, holds.FoundHold], T],
        key: IdempotencyKey[T] | None = None,
        *,
        spends: bool = False,
    ) -> T:
        """``use_case`` on the account of the hold, given the hold as read before the
        lock: the use case refuses one no longer pending, and a hold another writer
        finishes in between makes the save's conditional update of it miss, so the use
        case runs again and sees it finished."""
        found = holds.get(self.conn, hold_id)
        if found is None:
            raise NotFound("hold", hold_id)
        return self.on_account(
            found.hold.account_id,
            lambda account, settings: use_case(account, settings, found),
            key,
            spends=spends,
        )

    def check_alerts(self, account: LockedAccount, settings: Settings) -> None:
        """Queue the balance and allowance alerts the account's level crossed."""
        if alerts.check(account, settings):
            self.jobs_queued = True

    def recharge_if_low(self, account: LockedAccount, settings: Settings) -> None:
        """Start an auto-recharge if the account fell below its threshold."""
        if purchases.start_recharge_if_low(account, settings, self._payment_provider):
            self.jobs_queued = True

    def save(self, account: LockedAccount) -> None:
        """Write the locked account's changes with the commit."""
        self._saving.append(account)

    # The commit.

    def commit(self) -> None:
        """Write what the use case changed and the keys' results, and commit: in one
        round trip on PostgreSQL, where a conditional change that misses is refused by
        the database and makes the COMMIT a rollback. The writes of accounts locked
        together go in statements of their own when their rows are many enough to copy,
        which a pipeline cannot do."""
        pending = self._pending_writes
        if pending is not None and pending.copied:
            for account in self._saving:
                account.save()
            pending.write(self.conn)
            self._write_keys()
            self.conn.commit()
            return
        with pipelined(self.conn, commit=True):
            for account in self._saving:
                account.save()
            if pending is not None:
                pending.write(self.conn)
            self._write_keys()

    def _write_keys(self) -> None:
        if len(self._keys) == 1:
            key, stored = self._keys[0]
            idempotency_store.record(
                self.conn, key.key, key.operation, key.fingerprint, stored, self.now, key.owner
            )
        elif self._keys:
            assert all(k.owner == idempotency_store.OPERATOR for k, _ in self._keys)
            entries = [(k.key, k.operation, k.fingerprint, r) for k, r in self._keys]
            idempotency_store.record_many(self.conn, entries, self.now)

    def _lock(
        self, account_id: str, key: IdempotencyKey[Any] | None
    ) -> tuple[LockedAccount, StoredResult | None]:
        """The account locked and brought up to date, and what is stored under ``key``:
        read in the round trip that takes the lock, once it is taken, so that a retry
        waits for the call it repeats, then finds its result. The due maintenance is
        committed by itself, so a refusal that follows cannot undo it."""
        self._held.enter_context(self.db.account_locks(account_id))
        operators = key is not None and key.owner == idempotency_store.OPERATOR
        found, stored = accounts.lock_with_grants_and_key(
            self.conn, account_id, key.key if operators and key is not None else None
        )
        if found is None:
            raise NotFound("account", account_id)
        row, loaded = found
        if self.now >= row.due_at:
            self._bring_up_to_date(row, loaded)
            self.conn.commit()
            row, loaded = self._relocked(account_id)
        if key is not None and not operators:
            stored = idempotency_store.find(self.conn, key.key, key.owner)
        return self._locked_account(row, loaded), stored

    def _bring_up_to_date(self, row: AccountRow, loaded: list[Grant]) -> None:
        account = LockedAccount(self.conn, row, self.now, loaded=loaded)
        bring_up_to_date(account)
        alerts.check(account, self.settings)
        account.save()

    def _relocked(self, account_id: str) -> tuple[AccountRow, list[Grant]]:
        """The account and its grants read again, as bringing them up to date left them."""
        found = accounts.lock_with_grants(self.conn, account_id)
        assert found is not None
        return found

    def _locked_account(
        self, row: AccountRow, loaded: list[Grant], pending_writes: PendingWrites | None = None
    ) -> LockedAccount:
        memo = self._caches.catalog(row)
        return LockedAccount(self.conn, row, self.now, memo, pending_writes, loaded=loaded)


@dataclass
class UnitsOfWork:
    """Runs use cases, each in a unit of work of its own: again when a concurrent writer
    got there first or the database rolled it back for a reason of the moment, and
    ``on_commit`` told of each unit once it committed."""

    db: Database
    clock: Callable[[], datetime]
    on_commit: Callable[[UnitOfWork], None]
    payment_provider: str
    caches: Caches = field(default_factory=Caches)

    def now(self) -> datetime:
        """The clock's time in UTC; a naive time is refused rather than guessed at."""
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def run(self, use_case: Callable[[UnitOfWork], T], key: IdempotencyKey[T] | None = None) -> T:
        """``use_case`` in a unit of work, committed; once for ``key``
        (:meth:`UnitOfWork.once`)."""
        for remaining in reversed(range(ATTEMPTS)):
            try:
                with ExitStack() as held, self.db.write() as conn:
                    uow = UnitOfWork(
                        self.db, conn, self.now(), self.caches, held, self.payment_provider
                    )
                    outcome = use_case(uow) if key is None else uow.once(key, use_case)
                    uow.commit()
            except (ConcurrentUpdate, DBAPIError) as error:
                if remaining == 0 or not _retryable(error):
                    raise
                continue
            self.on_commit(uow)
            return outcome
        raise AssertionError("unreachable")

    def on_account(
        self,
        account_id: str,
        use_case: AccountUseCase[T],
        key: IdempotencyKey[T] | None = None,
        *,
        spends: bool = False,
    ) -> T:
        """:meth:`UnitOfWork.on_account` in a unit of work of its own."""
        return self.run(lambda uow: uow.on_account(account_id, use_case, key, spends=spends))

    def on_hold(
        self,
        hold_id: str,
        use_case: Callable[[LockedAccount, Settings, holds.FoundHold], T],
        key: IdempotencyKey[T] | None = None,
        *,
        spends: bool = False,
    ) -> T:
        """:meth:`UnitOfWork.on_hold` in a unit of work of its own."""
        return self.run(lambda uow: uow.on_hold(hold_id, use_case, key, spends=spends))

    def read_account(self, account_id: str, query: AccountUseCase[T]) -> T:
        """Answer from a snapshot; an account that is due is brought up to date (and so
        written) first."""
        with self.db.read() as conn:
            now = self.now()
            row = accounts.get(conn, account_id)
            if row is None:
                raise NotFound("account", account_id)
            if now < row.due_at:
                account = LockedAccount(conn, row, now, self.caches.catalog(row))
                return query(account, self.caches.settings(conn, row))
        return self.on_account(account_id, query)


def _retryable(error: Exception) -> bool:
    """A unique key taken (same idempotency key, same new id), a conditional update that
    missed, or a rollback of the moment (a deadlock, a serialization failure:
    :func:`database.transient`); decided by the error's type, SQLSTATE or SQLite result
    code, never by its text. A lock waited for until the lock timeout is not waited for
    again: :class:`database.LockTimeout` goes to the caller."""
    return isinstance(error, ConcurrentUpdate | IntegrityError) or database.transient(error)


def replay(conn: Connection, key: IdempotencyKey[T]) -> T | None:
    """The first result stored under ``key``, read on ``conn``; ``None`` for a new key."""
    return idempotency.replay(conn, key.key, key.operation, key.fingerprint, key.result, key.owner)


def keyed(
    key: str | None,
    operation: str,
    params: Mapping[str, Any],
    result: type[T],
    owner: str = idempotency_store.OPERATOR,
) -> IdempotencyKey[T] | None:
    """The caller's ``key`` for ``operation`` with these ``params``, if one is given."""
    return None if key is None else IdempotencyKey(key, operation, params, result, owner)
