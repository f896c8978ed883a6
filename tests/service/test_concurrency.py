"""Many writers on one account at once, in threads and in processes, on both engines.

Every writer has its own ``CreditMeter`` (its own engine and connections), as separate API
workers would. Whatever the interleaving, the account never goes below zero, everything
acknowledged is in the ledger exactly once, and the books verify.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as ProcessBarrier
from typing import TypeVar

import pytest
import sqlalchemy as sa

from creditmeter import CreditMeter, HoldNotPending, InsufficientCredits, UsageEvent
from creditmeter.core.grants import Grant
from creditmeter.core.ids import new_id
from creditmeter.core.records import Charge, UsageRecord
from creditmeter.core.types import ANY_POOL, DEFAULT_PRIORITY, GrantSource
from creditmeter.store import accounts
from creditmeter.store import grants as grant_store

T = TypeVar("T")

ACCOUNT = "hot"
FEATURE = "chat"
ALLOWANCE = 150
PURCHASED = 150
INITIAL = ALLOWANCE + PURCHASED
THREADS = 8
OPERATIONS = 30
PROCESSES = 4
THREADS_PER_PROCESS = 2
WAIT_SECONDS = 120


@dataclass(frozen=True)
class Acknowledged:
    """A charge the meter returned: what the ledger must now contain."""

    usage_id: str
    transaction_id: str
    charged: int


@dataclass
class Tally:
    attempted: int = 0
    refused: int = 0
    released: int = 0
    charges: list[Acknowledged] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.attempted += other.attempted
        self.refused += other.refused
        self.released += other.released
        self.charges += other.charges

    @classmethod
    def of(cls, tallies: Iterable[Tally]) -> Tally:
        total = cls()
        for tally in tallies:
            total.add(tally)
        return total

    @property
    def acknowledged(self) -> int:
        return len(self.charges) + self.released

    @property
    def charged(self) -> int:
        return sum(c.charged for c in self.charges)


def prepare(url: str) -> None:
    """Schema, price book, plan and the hot account with an allowance and a purchase."""
    with CreditMeter(url) as meter:
        meter.put_feature(FEATURE, rates={"tokens": 1})
        meter.put_plan("team", allowances={FEATURE: ALLOWANCE})
        meter.create_account(ACCOUNT, plan="team")
        meter.grant(ACCOUNT, PURCHASED, source="purchase")
        assert meter.balance(ACCOUNT).available == INITIAL


def run_operations(meter: CreditMeter, seed: int, count: int) -> Tally:
    """A random mix of one-shot charges and holds that are settled (for less or more than
    the estimate) or released; refusals are counted, any other error is raised."""
    rng = random.Random(seed)
    tally = Tally()
    for _ in range(count):
        kind = rng.choice(("charge", "charge_usage", "settle", "settle_more", "release"))
        credits = rng.randint(1, 12)
        tally.attempted += 1
        try:
            charge = _operate(meter, rng, kind, credits)
        except InsufficientCredits:
            tally.refused += 1
            continue
        if charge is None:
            tally.released += 1
            continue
        assert charge.available_after >= 0
        assert charge.transaction_id is not None
        tally.charges.append(Acknowledged(charge.usage_id, charge.transaction_id, charge.charged))
    return tally


def _operate(meter: CreditMeter, rng: random.Random, kind: str, credits: int) -> Charge | None:
    if kind == "charge":
        charge = meter.charge(ACCOUNT, FEATURE, credits=credits)
        assert charge.charged == credits
        return charge
    if kind == "charge_usage":
        charge = meter.charge(ACCOUNT, FEATURE, usage={"tokens": credits})
        assert charge.charged == credits
        return charge
    hold = meter.authorize(ACCOUNT, FEATURE, credits=credits)
    assert hold.reserved == credits
    if kind == "release":
        meter.release(hold.id)
        return None
    if kind == "settle":
        actual = rng.randint(0, credits)
        charge = meter.settle(hold.id, credits=actual)
        assert charge.charged == actual
        return charge
    actual = credits + rng.randint(1, 5)
    charge = meter.settle(hold.id, credits=actual)
    assert credits <= charge.charged <= actual
    assert charge.charged + charge.uncollected == actual
    return charge


def _all_usage(meter: CreditMeter) -> list[UsageRecord]:
    records: list[UsageRecord] = []
    cursor = None
    while True:
        page = meter.usage(ACCOUNT, limit=500, cursor=cursor)
        records += page.data
        if page.next_cursor is None:
            return records
        cursor = page.next_cursor


def assert_books_agree(url: str, tally: Tally) -> None:
    with CreditMeter(url, migrate=False) as meter:
        balance = meter.balance(ACCOUNT)
        assert balance.held == 0
        assert balance.debt == 0
        assert balance.available >= 0
        assert balance.available == INITIAL - tally.charged
        assert meter.verify() == []
        usage_transactions = list(meter.iter_transactions(ACCOUNT, types=("usage",)))
        records = _all_usage(meter)
    assert tally.acknowledged + tally.refused == tally.attempted
    assert tally.refused > 0, "the writers asked for more than the account had"
    assert len(usage_transactions) == len(tally.charges)
    assert len(records) == len(tally.charges)
    assert {t.id for t in usage_transactions} == {c.transaction_id for c in tally.charges}
    assert {r.id for r in records} == {c.usage_id for c in tally.charges}
    assert sum(-t.amount for t in usage_transactions) == tally.charged
    assert sum(r.charged for r in records) == tally.charged


@contextmanager
def alongside(watch: Callable[[threading.Event], None]) -> Iterator[None]:
    """``watch(stop)`` in a thread of its own while the block runs; ``stop`` is set when
    the block ends, and what ``watch`` raised is raised then."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(watch, stop)
        try:
            yield
        finally:
            stop.set()
        watcher.result()


@contextmanager
def watching_balance(url: str) -> Iterator[list[int]]:
    """Read the balance over and over while the block runs; yields what was seen."""
    seen: list[int] = []

    def watch(stop: threading.Event) -> None:
        with CreditMeter(url, migrate=False) as meter:
            while not stop.is_set():
                balance = meter.balance(ACCOUNT)
                seen.append(balance.available)
                assert balance.held >= 0

    with alongside(watch):
        yield seen


def in_threads(url: str, count: int, work: Callable[[CreditMeter, int], T]) -> list[T]:
    """``work(meter, index)`` in ``count`` threads started together, each with its own
    meter."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        with CreditMeter(url, migrate=False) as meter:
            barrier.wait(timeout=WAIT_SECONDS)
            return work(meter, index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_threads_never_overdraw_one_account(migrated_url: str) -> None:
    prepare(migrated_url)
    with watching_balance(migrated_url) as seen:
        tallies = in_threads(
            migrated_url, THREADS, lambda meter, i: run_operations(meter, i, OPERATIONS)
        )
    tally = Tally.of(tallies)
    assert tally.attempted == THREADS * OPERATIONS
    assert seen
    assert min(seen) >= 0
    assert_books_agree(migrated_url, tally)


@contextmanager
def counting_lock_waits(url: str, application: str) -> Iterator[list[int]]:
    """While the block runs, count again and again the sessions of ``application`` that
    PostgreSQL keeps waiting for a lock; yields the counts."""
    counts: list[int] = []
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = :application AND wait_event_type = 'Lock'"
    )

    def watch(stop: threading.Event) -> None:
        engine = sa.create_engine(url, pool_size=1)
        try:
            with engine.connect() as conn:
                while not stop.is_set():
                    counts.append(conn.execute(query, {"application": application}).scalar_one())
        finally:
            engine.dispose()

    with alongside(watch):
        yield counts


TURNS = "creditmeter-turns"


def _named(url: str, engine_name: str) -> str:
    """``url`` with its PostgreSQL sessions named ``TURNS``, to be told apart."""
    if engine_name != "postgresql":
        return url
    named = sa.make_url(url).update_query_dict({"application_name": TURNS})
    return named.render_as_string(hide_password=False)


def _lock_waits(url: str, engine_name: str) -> AbstractContextManager[list[int]]:
    if engine_name != "postgresql":
        return nullcontext([])
    return counting_lock_waits(url, TURNS)


def in_one_meter(url: str, engine_name: str, work: Callable[[CreditMeter, int], T]) -> list[T]:
    """``work(meter, index)`` in ``THREADS`` threads started together, all with one meter
    and a connection each, as the request threads of a server worker; on PostgreSQL, no
    session of the meter may be kept waiting by PostgreSQL for a lock meanwhile."""
    barrier = threading.Barrier(THREADS)

    def run(meter: CreditMeter, index: int) -> T:
        barrier.wait(timeout=WAIT_SECONDS)
        return work(meter, index)

    with (
        CreditMeter(_named(url, engine_name), migrate=False, pool_size=THREADS) as meter,
        _lock_waits(url, engine_name) as waits,
        ThreadPoolExecutor(THREADS) as pool,
    ):
        done = list(pool.map(lambda i: run(meter, i), range(THREADS)))
    if engine_name == "postgresql":
        assert waits, "the sessions were never looked at"
        assert max(waits) == 0, "sessions of one meter waited for each other's locks"
    return done


def test_threads_of_one_meter_take_turns_on_one_account(
    migrated_url: str, engine_name: str
) -> None:
    """Whatever the threads of one meter do to one account, none of their transactions
    waits in PostgreSQL for another's lock (they take turns in the process, a failed one
    rolled back within its turn), and the books agree."""
    prepare(migrated_url)
    tallies = in_one_meter(
        migrated_url, engine_name, lambda meter, i: run_operations(meter, i, OPERATIONS)
    )
    tally = Tally.of(tallies)
    assert tally.attempted == THREADS * OPERATIONS
    assert_books_agree(migrated_url, tally)


def test_retries_in_threads_of_one_meter_take_turns(migrated_url: str, engine_name: str) -> None:
    """Retries of one charge from the threads of one meter: one charge, every retry
    answered with it, and none waits in PostgreSQL for another's lock (a replay's
    transaction, which took the account's lock to read its key, ends within its turn)."""
    prepare(migrated_url)

    def retry(meter: CreditMeter, _: int) -> set[str]:
        return {
            meter.charge(ACCOUNT, FEATURE, credits=3, idempotency_key="turns").usage_id
            for _ in range(OPERATIONS)
        }

    answered = set().union(*in_one_meter(migrated_url, engine_name, retry))
    assert len(answered) == 1
    with CreditMeter(migrated_url, migrate=False) as meter:
        assert meter.balance(ACCOUNT).available == INITIAL - 3
        assert meter.verify() == []


def test_batches_and_charges_in_threads_of_one_meter_take_turns(
    migrated_url: str, engine_name: str
) -> None:
    """Batches over overlapping sets of accounts and one-shot charges, from the threads of
    one meter: a batch takes the turns of all its accounts (in the order of their ids, as
    it locks them), so none of their transactions waits in PostgreSQL for another's lock,
    none waits for another in a cycle, and every credit charged is accounted for."""
    prepare(migrated_url)
    others = ["warm-1", "warm-2"]
    with CreditMeter(migrated_url, migrate=False) as meter:
        for account in others:
            meter.create_account(account)
            meter.grant(account, 1_000)
    accounts = [ACCOUNT, *others]

    def charge(meter: CreditMeter, index: int) -> Counter[str]:
        charged: Counter[str] = Counter()
        for n in range(OPERATIONS // 3):
            batch = accounts[(index + n) % 2 :]  # all three, or the last two
            events = [UsageEvent(a, FEATURE, credits=1) for a in reversed(batch)]
            for outcome in meter.charge_many(events):
                assert isinstance(outcome, Charge)
                charged[outcome.account_id] += outcome.charged
            charged[ACCOUNT] += meter.charge(ACCOUNT, FEATURE, credits=1).charged
        return charged

    charged = sum(in_one_meter(migrated_url, engine_name, charge), Counter[str]())
    assert all(charged[a] > 0 for a in accounts)
    with CreditMeter(migrated_url, migrate=False) as meter:
        assert meter.balance(ACCOUNT).available == INITIAL - charged[ACCOUNT]
        for account in others:
            assert meter.balance(account).available == 1_000 - charged[account]
        assert meter.verify() == []


def _process_worker(
    url: str, seed: int, barrier: ProcessBarrier, results: Queue[tuple[str, object]]
) -> None:
    """Runs in a spawned process: a few threads of operations on the hot account."""
    try:
        barrier.wait(timeout=WAIT_SECONDS)
        tallies = in_threads(
            url,
            THREADS_PER_PROCESS,
            lambda meter, i: run_operations(meter, seed * 100 + i, OPERATIONS),
        )
        results.put(("ok", Tally.of(tallies)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_processes_never_overdraw_one_account(migrated_url: str) -> None:
    prepare(migrated_url)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results: Queue[tuple[str, object]] = context.Queue()
    processes = [
        context.Process(target=_process_worker, args=(migrated_url, seed, barrier, results))
        for seed in range(PROCESSES)
    ]
    for p in processes:
        p.start()
    try:
        with watching_balance(migrated_url) as seen:
            outcomes = [results.get(timeout=WAIT_SECONDS) for _ in processes]
    finally:
        for p in processes:
            p.join(timeout=WAIT_SECONDS)
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    tally = Tally()
    for status, outcome in outcomes:
        assert status == "ok", outcome
        assert isinstance(outcome, Tally)
        tally.add(outcome)
    assert tally.attempted == PROCESSES * THREADS_PER_PROCESS * OPERATIONS
    assert min(seen) >= 0
    assert_books_agree(migrated_url, tally)


def test_concurrent_creation_makes_one_account_with_one_welcome_bonus(
    migrated_url: str,
) -> None:
    with CreditMeter(migrated_url) as meter:
        meter.change_settings({"welcome_bonus": 50}, changed_by="test")
        meter.put_plan("starter", allowances={"*": 100})
    accounts = in_threads(
        migrated_url,
        THREADS,
        lambda meter, _: meter.create_account("new", name="New", plan="starter"),
    )
    assert {a.id for a in accounts} == {"new"}
    assert len({a.created_at for a in accounts}) == 1
    with CreditMeter(migrated_url, migrate=False) as meter:
        assert [a.id for a in meter.list_accounts()] == ["new"]
        assert meter.balance("new").available == 150
        ledger = list(meter.iter_transactions("new"))
        assert sorted(t.type.value for t in ledger) == ["allocation", "grant"]
        assert meter.verify() == []


def _settle_or_refuse(meter: CreditMeter, hold_id: str, release: bool) -> str:
    try:
        if release:
            meter.release(hold_id)
            return "released"
        meter.settle(hold_id, credits=7)
    except HoldNotPending:
        return "not pending"
    return "settled"


def test_concurrent_settles_of_one_hold_charge_it_once(migrated_url: str) -> None:
    prepare(migrated_url)
    with CreditMeter(migrated_url, migrate=False) as meter:
        hold = meter.authorize(ACCOUNT, FEATURE, credits=10)
    outcomes = in_threads(
        migrated_url, THREADS, lambda meter, _: _settle_or_refuse(meter, hold.id, release=False)
    )
    assert sorted(outcomes) == ["not pending"] * (THREADS - 1) + ["settled"]
    with CreditMeter(migrated_url, migrate=False) as meter:
        assert meter.hold(hold.id).status.value == "settled"
        balance = meter.balance(ACCOUNT)
        assert (balance.available, balance.held) == (INITIAL - 7, 0)
        assert len(list(meter.iter_transactions(ACCOUNT, types=("usage",)))) == 1
        assert meter.verify() == []


def test_concurrent_settle_and_release_of_one_hold_finish_it_once(migrated_url: str) -> None:
    prepare(migrated_url)
    with CreditMeter(migrated_url, migrate=False) as meter:
        hold = meter.authorize(ACCOUNT, FEATURE, credits=10)
    outcomes = in_threads(
        migrated_url,
        THREADS,
        lambda meter, i: _settle_or_refuse(meter, hold.id, release=i % 2 == 1),
    )
    assert sorted(outcomes)[: THREADS - 1] == ["not pending"] * (THREADS - 1)
    winner = sorted(outcomes)[-1]
    with CreditMeter(migrated_url, migrate=False) as meter:
        assert meter.hold(hold.id).status.value == winner
        balance = meter.balance(ACCOUNT)
        expected = INITIAL - 7 if winner == "settled" else INITIAL
        assert (balance.available, balance.held) == (expected, 0)
        usage_count = len(list(meter.iter_transactions(ACCOUNT, types=("usage",))))
        assert usage_count == (1 if winner == "settled" else 0)
        assert meter.verify() == []


def test_concurrent_retries_of_one_idempotency_key_charge_once(migrated_url: str) -> None:
    prepare(migrated_url)
    charges = in_threads(
        migrated_url,
        THREADS,
        lambda meter, _: meter.charge(ACCOUNT, FEATURE, credits=9, idempotency_key="once"),
    )
    assert len({c.usage_id for c in charges}) == 1
    assert len({c.transaction_id for c in charges}) == 1
    with CreditMeter(migrated_url, migrate=False) as meter:
        assert meter.balance(ACCOUNT).available == INITIAL - 9
        assert len(list(meter.iter_transactions(ACCOUNT, types=("usage",)))) == 1
        assert meter.verify() == []


def _authorize(meter: CreditMeter) -> int:
    return meter.authorize("late", "late.call", credits=10).reserved


def _charge_in_a_batch(meter: CreditMeter) -> int:
    (charged,) = meter.charge_many([UsageEvent("late", "late.call", credits=10)])
    assert isinstance(charged, Charge), charged
    return charged.charged


@pytest.mark.parametrize("write", [_authorize, _charge_in_a_batch])
def test_a_writer_waiting_for_an_account_sees_what_its_holder_committed(
    migrated_url: str, write: Callable[[CreditMeter], int]
) -> None:
    # The waiter's grants are read once it has the lock: a grant the holder added is there
    # (a batch's accounts are locked together, their grants read the same way).
    with CreditMeter(migrated_url) as setup:
        setup.put_feature("late.call", rates={"requests": 10})
        setup.create_account("late")
    holder, waiter = CreditMeter(migrated_url), CreditMeter(migrated_url)
    outcome: dict[str, object] = {}

    def authorize() -> None:
        try:
            outcome["drawn"] = write(waiter)
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    try:
        with holder.db.write() as conn:
            found = accounts.lock_with_grants(conn, "late")
            assert found is not None
            row, _ = found
            thread = threading.Thread(target=authorize)
            thread.start()
            _wait_until_waiting_for_a_lock(holder, thread)
            # In effect before the waiter's clock read, so it is the waiter's to use.
            now = datetime.now(UTC) - timedelta(minutes=1)
            granted = Grant(
                id=new_id("grt"),
                account_id="late",
                source=GrantSource.ADMIN,
                pool=ANY_POOL,
                priority=DEFAULT_PRIORITY[GrantSource.ADMIN],
                amount=100,
                remaining=100,
                held=0,
                effective_at=now,
                expires_at=None,
                created_at=now,
            )
            grant_store.insert(conn, granted)
            row.balance += 100
            accounts.save_totals(conn, [row])
            assert not outcome, "the waiter did not wait for the lock"
        thread.join(WAIT_SECONDS)
    finally:
        holder.close()
        waiter.close()
    assert outcome == {"drawn": 10}


def _wait_until_waiting_for_a_lock(meter: CreditMeter, thread: threading.Thread) -> None:
    """On PostgreSQL, until a session of this test's schema waits for a lock; on SQLite,
    whose writers wait in the driver, a moment."""
    if meter.db.is_sqlite:
        time.sleep(0.5)
        return
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + WAIT_SECONDS
    with meter.db.engine.connect() as conn:
        while not conn.execute(query).scalar() and thread.is_alive():
            assert time.monotonic() < deadline, "the waiter never waited for the lock"
            time.sleep(0.01)
