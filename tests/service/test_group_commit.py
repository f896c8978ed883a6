"""Group commit: operations that arrive together are applied in one transaction, each
with its own result, its own refusal and its own idempotency key."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from creditmeter import (
    CreditMeter,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    UsageEvent,
)
from creditmeter.core.records import Charge, Hold
from creditmeter.core.settings import Settings
from creditmeter.service import metering
from creditmeter.service.group_commit import GroupCommit, Operation, apply
from creditmeter.service.locked_account import LockedAccount
from creditmeter.service.unit_of_work import UnitOfWork, UnitsOfWork, keyed

WAIT_SECONDS = 30


@pytest.fixture
def meter(meter: CreditMeter) -> CreditMeter:
    meter.put_feature("chat", rates={"tokens": 1})
    meter.create_account("acme")
    meter.grant("acme", 100, source="purchase")
    return meter


@pytest.fixture
def commits() -> list[UnitOfWork]:
    return []


@pytest.fixture
def units(meter: CreditMeter, commits: list[UnitOfWork]) -> UnitsOfWork:
    """Units of work on the meter's database, each commit counted."""
    return UnitsOfWork(meter.db, meter.clock, commits.append, meter.payments.name)


def charge(account_id: str, credits: int, key: str | None = None) -> Operation[Charge]:
    event = UsageEvent(account_id, "chat", credits=credits, idempotency_key=key)
    use_case = partial(metering.charge_usage, event=event)
    return Operation(account_id, None, use_case, keyed(key, "charge", event.params(), Charge), True)


def authorize(account_id: str, credits: int) -> Operation[Hold]:
    use_case = partial(
        metering.authorize_estimate,
        feature="chat",
        estimate=None,
        credits=credits,
        model=None,
        member=None,
        ttl=None,
        metadata=None,
        balancing=False,
    )
    return Operation(account_id, None, use_case, None, True)


def settle(hold_id: str, credits: int) -> Operation[Charge]:
    use_case = partial(
        metering.settle,
        usage_=None,
        credits=credits,
        model=None,
        member=None,
        success=True,
        metadata={},
        provider_cost=None,
    )
    return Operation(None, hold_id, use_case, None, True)


def changes_then_refuses(account: LockedAccount, settings: Settings) -> Charge:
    """A use case refused after it changed the account: only undoing it all undoes that."""
    metering.charge_usage(account, settings, UsageEvent(account.id, "chat", credits=1))
    raise InvalidRequest("refused after a change")


def test_a_group_applies_each_operation_as_it_would_alone(
    meter: CreditMeter, units: UnitsOfWork, commits: list[UnitOfWork]
) -> None:
    held = meter.authorize("acme", "chat", credits=20)
    operations: list[Operation[Any]] = [
        authorize("acme", 30),
        charge("acme", 80),  # 50 available: refused, and the group goes on
        settle(held.id, 10),
        settle("hold_nope", 1),
        charge("nobody", 1),
        charge("acme", 5, key="k1"),
        charge("acme", 5, key="k1"),  # the same key in the same group: applied once
        charge("acme", 6, key="k1"),  # the key for another charge: a conflict
    ]
    outcomes = units.run(lambda uow: apply(uow, operations))

    assert [type(o).__name__ for o in outcomes] == [
        "Hold",
        "InsufficientCredits",
        "Charge",
        "NotFound",
        "NotFound",
        "Charge",
        "Charge",
        "IdempotencyConflict",
    ]
    refused = outcomes[1]
    assert isinstance(refused, InsufficientCredits)
    assert (refused.required, refused.available) == (80, 50)
    assert outcomes[2].charged == 10
    assert outcomes[2].available_after == 60
    assert outcomes[5] == outcomes[6]
    assert outcomes[5].available_after == 55
    assert len(commits) == 1
    assert len(commits[0].new_charges) == 2
    assert meter.balance("acme").available == 55
    assert meter.hold(held.id).status.value == "settled"
    assert len(meter.usage("acme").data) == 2
    assert meter.charge("acme", "chat", credits=5, idempotency_key="k1") == outcomes[5]
    assert meter.verify() == []


def test_a_refusal_after_a_change_rolls_the_whole_group_back(
    meter: CreditMeter, units: UnitsOfWork, commits: list[UnitOfWork]
) -> None:
    bad = Operation("acme", None, changes_then_refuses, None, False)
    with pytest.raises(InvalidRequest):
        units.run(lambda uow: apply(uow, [charge("acme", 5), bad]))

    assert commits == []
    assert meter.balance("acme").available == 100
    assert not meter.usage("acme").data


class Queued:
    """Operations submitted to a group commit from threads of their own, behind one that
    runs alone until released: they queue, and form the next group together."""

    def __init__(self, group: GroupCommit, pool: ThreadPoolExecutor) -> None:
        self.group = group
        self.pool = pool
        self.release = threading.Event()
        self.first: Future[None] | None = None

    def submit(self, call: Callable[[GroupCommit], Any]) -> Future[Any]:
        if self.first is None:
            started = threading.Event()

            def blocking(account: LockedAccount, settings: Settings) -> None:
                started.set()
                assert self.release.wait(WAIT_SECONDS)

            self.first = self.pool.submit(self.group.on_account, "acme", blocking)
            assert started.wait(WAIT_SECONDS)
        queued = self.group.waiting
        future = self.pool.submit(call, self.group)
        self.wait_for(queued + 1)  # queued in the order submitted
        return future

    def wait_for(self, queued: int) -> None:
        for _ in range(WAIT_SECONDS * 1000):
            if self.group.waiting >= queued:
                return
            threading.Event().wait(0.001)
        raise AssertionError(f"fewer than {queued} operations queued")

    def let_go(self) -> None:
        """Release the first operation: those queued behind it form the next group."""
        self.release.set()
        assert self.first is not None
        self.first.result(WAIT_SECONDS)


@pytest.fixture
def sizes() -> list[int]:
    """How many operations each commit of the group commit applied."""
    return []


@pytest.fixture
def queued(units: UnitsOfWork, sizes: list[int]) -> Iterator[Queued]:
    with ThreadPoolExecutor(8) as pool:
        yield Queued(GroupCommit(units, committed=sizes.append), pool)


def outcome(future: Future[Any]) -> Any:
    error = future.exception(WAIT_SECONDS)
    return future.result() if error is None else error


def test_operations_that_arrive_together_commit_as_one_group(
    meter: CreditMeter, queued: Queued, commits: list[UnitOfWork], sizes: list[int]
) -> None:
    held = meter.authorize("acme", "chat", credits=20)
    futures = [
        queued.submit(lambda g: g.on_hold(held.id, charge_hold(10), spends=True)),
        queued.submit(lambda g: g.on_account("acme", charge_use_case(30), spends=True)),
        queued.submit(lambda g: g.on_account("acme", charge_use_case(500), spends=True)),
        queued.submit(lambda g: g.on_account("nobody", charge_use_case(1), spends=True)),
    ]
    queued.let_go()
    outcomes = [outcome(f) for f in futures]

    assert [type(o).__name__ for o in outcomes] == [
        "Charge",
        "Charge",
        "InsufficientCredits",
        "NotFound",
    ]
    assert len(commits) == 2  # the first alone, then the group
    assert sizes == [1, 4]
    assert meter.balance("acme").available == 60
    assert meter.verify() == []


def test_a_group_that_fails_runs_each_of_its_operations_alone(
    meter: CreditMeter, queued: Queued, commits: list[UnitOfWork], sizes: list[int]
) -> None:
    futures = [
        queued.submit(lambda g: g.on_account("acme", charge_use_case(10), spends=True)),
        queued.submit(lambda g: g.on_account("acme", changes_then_refuses)),
        queued.submit(lambda g: g.on_account("acme", charge_use_case(20), spends=True)),
    ]
    queued.let_go()
    outcomes = [outcome(f) for f in futures]

    assert isinstance(outcomes[0], Charge)
    assert isinstance(outcomes[2], Charge)
    assert isinstance(outcomes[1], InvalidRequest)
    assert len(commits) == 3  # the first, then each good one alone
    assert sizes == [1, 1, 1]
    assert meter.balance("acme").available == 70
    assert meter.verify() == []


def test_a_hold_settled_twice_at_once_is_settled_once(
    meter: CreditMeter, queued: Queued, commits: list[UnitOfWork]
) -> None:
    held = meter.authorize("acme", "chat", credits=20)
    futures = [
        queued.submit(lambda g, n=n: g.on_hold(held.id, charge_hold(n)))  # type: ignore[misc]
        for n in (10, 15)
    ]
    queued.let_go()
    outcomes = [outcome(f) for f in futures]

    assert isinstance(outcomes[0], Charge)
    assert outcomes[0].charged == 10
    assert isinstance(outcomes[1], HoldNotPending)
    assert meter.balance("acme").available == 90
    assert meter.verify() == []


def test_a_key_retried_while_its_first_call_waits_is_applied_once(
    meter: CreditMeter, queued: Queued
) -> None:
    ops = [charge("acme", 7, key="k"), charge("acme", 7, key="k"), charge("acme", 8, key="k")]
    futures = [queued.submit(partial(submit, op=op)) for op in ops]
    queued.let_go()
    outcomes = [outcome(f) for f in futures]

    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[2], IdempotencyConflict)
    assert meter.balance("acme").available == 93
    assert len(meter.usage("acme").data) == 1


def submit(group: GroupCommit, op: Operation[Any]) -> Any:
    assert op.account_id is not None
    return group.on_account(op.account_id, op.use_case, op.key, spends=op.spends)


def charge_use_case(credits: int) -> Callable[[LockedAccount, Settings], Charge]:
    return charge("acme", credits).use_case


def charge_hold(credits: int) -> Callable[..., Charge]:
    return settle("-", credits).use_case
