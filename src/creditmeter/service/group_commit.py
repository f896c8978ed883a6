"""Group commit: the metering operations that one process receives at once, applied in
one transaction.

An operation that arrives while no group is being applied runs at once, on its own, as
it would without grouping: a lone request waits for no one. Operations that arrive while
a group is being applied queue; when the group is done, the first of them leads the next
group: it applies every queued operation (up to :data:`LIMIT`) in one unit of work, with
one lock on each account they touch (taken in the order of the accounts' ids) and one
commit, and hands each operation its result. The group closes when the previous one
commits, so the busier the process, the larger its groups; an account that many requests
use at once (one organisation, many users) takes its lock once a group rather than once
a request.

Each operation keeps what it has on its own:

- its idempotency key: a key used before returns its first result; a key used twice in
  one group is applied once, the second getting the first's result;
- its refusal: an operation refused (short of credits, a hold no longer pending, an
  unknown feature…) gets its error and changes nothing; the others go on;
- the invariants: the use cases are those of the ordinary path, on the same locked
  account, and the database checks the same constraints at the commit.

A refusal that comes after its use case changed the account cannot be undone without
undoing the group; nor can any other error (the database's, a lock not granted). Then
the group is rolled back, and every operation of it runs again on its own, in the thread
that asked for it: the group either commits whole or changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from creditmeter.core.errors import CreditMeterError, IdempotencyConflict, NotFound
from creditmeter.core.records import Charge
from creditmeter.core.settings import Settings
from creditmeter.service import idempotency
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.unit_of_work import (
    AccountUseCase,
    IdempotencyKey,
    UnitOfWork,
    UnitsOfWork,
)
from creditmeter.store import holds
from creditmeter.store import idempotency as idempotency_store
from creditmeter.store.holds import FoundHold

log = logging.getLogger(__name__)
T = TypeVar("T")
HoldUseCase = Callable[[LockedAccount, Settings, FoundHold], T]
"""A use case on a hold's account, given the hold as read before the lock."""
LIMIT = 64
"""Operations at most in one group."""


@dataclass(frozen=True)
class Operation(Generic[T]):
    """A use case on an account, or on the account of a hold, as a verb asks for it."""

    account_id: str | None
    hold_id: str | None
    use_case: Callable[..., T]
    key: IdempotencyKey[T] | None
    spends: bool

    def alone(self, units: UnitsOfWork) -> T:
        """The operation in a unit of work of its own."""
        if self.hold_id is not None:
            return units.on_hold(self.hold_id, self.use_case, self.key, spends=self.spends)
        assert self.account_id is not None
        return units.on_account(self.account_id, self.use_case, self.key, spends=self.spends)


Outcome = Any
"""An operation's result, or the :class:`CreditMeterError` that refused it."""


@dataclass(eq=False)
class _Queued:
    """An operation waiting for its group, and what its thread does when woken."""

    operation: Operation[Any]
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    """Woken to lead the next group."""
    applied: bool = False
    """Its group committed: ``outcome`` is its result or its refusal."""
    outcome: Outcome = None


class GroupCommit:
    """Applies the operations of concurrent callers in groups (see the module)."""

    def __init__(
        self,
        units: UnitsOfWork,
        limit: int = LIMIT,
        committed: Callable[[int], None] = lambda operations: None,
    ) -> None:
        """``committed``: told how many operations each commit applied (1: an operation
        on its own)."""
        self._units = units
        self._limit = limit
        self._committed = committed
        self._mutex = threading.Lock()
        self._queue: list[_Queued] = []
        self._leading = False
        """Whether a thread is applying a group (and will hand the queue on)."""

    @property
    def waiting(self) -> int:
        """How many operations are queued for the next group."""
        with self._mutex:
            return len(self._queue)

    def on_account(
        self,
        account_id: str,
        use_case: AccountUseCase[T],
        key: IdempotencyKey[T] | None = None,
        *,
        spends: bool = False,
    ) -> T:
        """:meth:`UnitsOfWork.on_account`, grouped with the operations of other callers."""
        return self._submit(Operation(account_id, None, use_case, key, spends))

    def on_hold(
        self,
        hold_id: str,
        use_case: HoldUseCase[T],
        key: IdempotencyKey[T] | None = None,
        *,
        spends: bool = False,
    ) -> T:
        """:meth:`UnitsOfWork.on_hold`, grouped with the operations of other callers."""
        return self._submit(Operation(None, hold_id, use_case, key, spends))

    def _submit(self, operation: Operation[T]) -> T:
        with self._mutex:
            if not self._leading:
                self._leading = True
                queued = None
            else:
                queued = _Queued(operation)
                self._queue.append(queued)
        if queued is None:
            return self._alone(operation)
        queued.woken.wait()
        if queued.leads:
            with self._mutex:
                group = _take(self._queue, self._limit)
            if len(group) == 1:
                return self._alone(operation)
            self._apply(group)
        if not queued.applied:
            return self._on_its_own(operation)
        if isinstance(queued.outcome, CreditMeterError):
            raise queued.outcome
        result: T = queued.outcome
        return result

    def _alone(self, operation: Operation[T]) -> T:
        """``operation`` on its own, then the queue handed on."""
        try:
            return self._on_its_own(operation)
        finally:
            self._hand_on()

    def _on_its_own(self, operation: Operation[T]) -> T:
        outcome = operation.alone(self._units)
        self._committed(1)
        return outcome

    def _apply(self, group: list[_Queued]) -> None:
        """Apply ``group`` in one unit of work, hand the queue on and wake the group."""
        try:
            operations = [queued.operation for queued in group]
            outcomes = self._units.run(lambda uow: apply(uow, operations))
            for queued, outcome in zip(group, outcomes, strict=True):
                queued.outcome, queued.applied = outcome, True
            self._committed(len(group))
        except Exception as error:  # each runs alone and meets its own error
            log.info(
                "a group of %d operations rolled back (%r): each runs alone", len(group), error
            )
        finally:
            self._hand_on()
            for queued in group[1:]:
                queued.woken.set()

    def _hand_on(self) -> None:
        """Wake the first queued operation to lead the next group, if any is queued."""
        with self._mutex:
            if self._queue:
                first = self._queue[0]
                first.leads = True
                first.woken.set()
            else:
                self._leading = False


def _take(queue: list[_Queued], limit: int) -> list[_Queued]:
    """The next group, taken out of ``queue`` in order: up to ``limit`` operations, and a
    hold's second operation left for a later group (the first finishes it)."""
    group: list[_Queued] = []
    holds_taken: set[str] = set()
    left: list[_Queued] = []
    for queued in queue:
        hold_id = queued.operation.hold_id
        if len(group) == limit or (hold_id is not None and hold_id in holds_taken):
            left.append(queued)
            continue
        if hold_id is not None:
            holds_taken.add(hold_id)
        group.append(queued)
    queue[:] = left
    return group


def apply(uow: UnitOfWork, operations: Sequence[Operation[Any]]) -> list[Outcome]:
    """Every operation in ``uow``, in order, on their accounts locked together: the result
    of each, or the refusal that left its account as it was. Raises what refused an
    operation after it changed its account, and any error that is not a refusal."""
    hold_ids = [op.hold_id for op in operations if op.hold_id is not None]
    found = holds.get_many(uow.conn, hold_ids)
    outcomes: list[Outcome] = [None] * len(operations)
    targets: list[tuple[int, str, FoundHold | None]] = []
    for index, op in enumerate(operations):
        if op.hold_id is None:
            assert op.account_id is not None
            targets.append((index, op.account_id, None))
        elif (hold := found.get(op.hold_id)) is None:
            outcomes[index] = NotFound("hold", op.hold_id)
        else:
            targets.append((index, hold.hold.account_id, hold))
    keys = [op.key.key for op in operations if op.key is not None]
    locked, stored = uow.lock_many([account_id for _, account_id, _ in targets], keys)
    for index, account_id, hold in targets:
        account = locked.get(account_id)
        if account is None:
            outcomes[index] = NotFound("account", account_id)
            continue
        outcomes[index] = _apply_one(uow, account, operations[index], hold, stored)
    for account in locked.values():
        uow.save(account)
    return outcomes


def _apply_one(
    uow: UnitOfWork,
    account: LockedAccount,
    op: Operation[Any],
    hold: FoundHold | None,
    stored: dict[str, idempotency_store.StoredResult],
) -> Outcome:
    """One operation, as :meth:`UnitOfWork.on_account` applies it."""
    key = op.key
    if key is not None:
        found = stored.get(key.key)
        try:
            first = idempotency.first_result(
                key.key, found, key.operation, key.fingerprint, key.result
            )
        except IdempotencyConflict as conflict:
            return conflict
        if first is not None:
            return first
    settings = uow.settings_of(account)
    changes = account.changes
    arguments = (account, settings) if hold is None else (account, settings, hold)
    try:
        outcome = op.use_case(*arguments)
    except CreditMeterError as refused:
        if account.changes != changes:
            raise
        return refused
    if op.spends:
        uow.recharge_if_low(account, settings)
    uow.check_alerts(account, settings)
    if isinstance(outcome, Charge):
        uow.new_charges.append(outcome)
    if key is not None:
        stored[key.key] = (key.operation, key.fingerprint, uow.remember(key, outcome))
    return outcome
