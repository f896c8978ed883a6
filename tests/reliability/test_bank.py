"""The bank test: worker processes killed with SIGKILL mid-operation, on both engines.

Several workers run random authorize / settle / release / charge / grant / refund
operations on a few shared accounts, each under an idempotency key made of the worker's
number and the operation's sequence number. The workers run in threads, four to a process
with one meter between them, so that their calls meet in groups (group commit) as the
request threads of a server worker do, and a kill lands in the middle of a group as well
as of a single operation. Some holds are authorized for a few hundred
milliseconds and never settled: they must expire by themselves (no test clock), and a
late settle or release of one must be refused as expired.

Each worker journals, in a file of its own, a ``begin`` line before every call and an
``ack`` line with what the library returned (ids, amounts) or the refusal it raised, after
the call returned; every line is flushed and fsynced. Every choice a worker makes depends
only on its seed, the sequence number and what its journal acknowledges, so a worker
restarted after a kill rebuilds its state from the journal and retries the operation after
its last acknowledged one with the same key and the same parameters; the library may or
may not have applied that operation before the kill.

The test kills random worker processes with SIGKILL at random moments (a few milliseconds after
journal progress, so most kills land inside a call) and restarts them. Besides, each
worker kills itself once at a chosen operation, after the library returned and before the
``ack`` line, having noted what it was given in a side file: the retry must find that
operation applied and return the very same result. When every worker has finished, the
test sweeps, and then checks the books against the journals:

- ``verify()`` finds nothing, and ``creditmeter verify URL`` exits 0;
- the ledger holds exactly the setup grants and the acknowledged transactions (each with
  the acknowledged account, type and amount), the usage records are exactly the
  acknowledged usages, the holds exactly the acknowledged holds: an operation applied
  twice, or applied and not acknowledged, leaves a row no journal names;
- the idempotency keys stored are exactly those of acknowledged operations, each with the
  ids the worker was given; a refused operation stored nothing;
- only the expected refusals happened: short of credits (charge, authorize), the late
  settle or release of a short hold (always, and as expired), the refund of a usage with
  nothing left to refund;
- no hold is pending: the long ones were settled or released, the short ones expired;
- each account's available balance is its initial balance plus the acknowledged grants and
  refunds less the acknowledged charges, to the credit.

``pytest tests/reliability --reliability-long -s`` runs it 20 times longer, with 20 times
as many kills; ``-s`` shows one line of figures per engine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any, Final

import sqlalchemy as sa

from creditmeter import CreditMeter, CreditMeterError, HoldNotPending, InsufficientCredits
from creditmeter.core.records import Charge, Hold, Transaction
from creditmeter.store.tables import holds, idempotency_keys, ledger_transactions, usage_records
from tests.reliability.conftest import Reliability

WORKERS: Final = 8
THREADS: Final = 4
"""Workers to a process, each in a thread of its own, sharing the process's meter."""
BUDGET: Final = 56
"""Operations per worker, before it settles or releases the holds it still has open."""
KILLS: Final = 5
CRASHES: Final = 1
"""Per worker: operations after which the worker kills itself once, between the library's
return and the journal line, so that a retry must replay an applied operation."""
ACCOUNTS: Final = ("acct-0", "acct-1", "acct-2", "acct-3")
FEATURE: Final = "work"
INITIAL: Final = 150
HOLD_TTL: Final = timedelta(hours=1)
SHORT_TTL_MS: Final = (200, 500)
KILL_JITTER: Final = 0.02
"""A kill lands up to this many seconds after the journal progress that triggered it."""
DEADLINE: Final = 120.0
"""Seconds the workers may take, per unit of scale."""

Entry = dict[str, Any]
"""One journal line (JSON)."""
Op = dict[str, Any]
"""An operation, as a worker chooses it and journals it."""

OPERATIONS: Final = (
    ("charge", 25),
    ("authorize", 14),
    ("authorize_short", 8),
    ("settle", 14),
    ("release", 6),
    ("grant", 12),
    ("refund_credits", 5),
    ("refund_usage", 8),
    ("finish_expired", 8),
)
VERB: Final = {
    "charge": "charge",
    "authorize": "authorize",
    "authorize_short": "authorize",
    "settle": "settle",
    "release": "release",
    "grant": "grant",
    "refund_credits": "refund",
    "refund_usage": "refund",
}
"""The library verb, and so the operation its idempotency key is stored under."""


# The worker process.


@dataclass(frozen=True)
class WorkerPlan:
    url: str
    worker: int
    seed: int
    budget: int
    journal: Path
    crash_after: frozenset[int] = frozenset()

    @property
    def error_file(self) -> Path:
        return self.journal.with_suffix(".error")

    @property
    def groups_file(self) -> Path:
        """The sizes of the groups of more than one operation that the process of this
        worker (its first) committed, a line each."""
        return self.journal.with_suffix(".groups")

    @property
    def crash_file(self) -> Path:
        """What the calls the worker crashed after returned: not a journal (the worker
        never acknowledged them), what the test compares the retries with."""
        return self.journal.with_suffix(".crashes")


def key_of(worker: int, seq: int) -> str:
    return f"bank-w{worker}-s{seq}"


def read_journal(path: Path) -> tuple[list[Entry], int]:
    """The complete lines of a journal, and their length in bytes: a line torn by a kill
    (no newline yet) was never written as far as anyone is concerned."""
    data = path.read_bytes() if path.exists() else b""
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines()], end


@dataclass
class WorkerState:
    """What a worker knows from its journal; every choice it makes depends on this only."""

    next_seq: int = 0
    open_holds: dict[str, int] = field(default_factory=dict)
    """Holds with the long ttl not settled or released yet: id → credits held."""
    short_holds: list[tuple[str, str]] = field(default_factory=list)
    """Holds with a short ttl: (id, expires_at)."""
    usages: list[tuple[str, str]] = field(default_factory=list)
    """Usages charged: (usage id, account)."""
    begun: dict[int, Op] = field(default_factory=dict)

    @classmethod
    def replay(cls, entries: list[Entry]) -> WorkerState:
        state = cls()
        for entry in entries:
            if entry["event"] == "begin":
                state.begun[entry["seq"]] = entry["op"]
            else:
                state.apply(entry)
        return state

    def apply(self, ack: Entry) -> None:
        if ack["seq"] != self.next_seq:
            raise AssertionError(f"acknowledged {ack['seq']} after {self.next_seq - 1}")
        self.next_seq += 1
        op, result = ack["op"], ack["result"]
        kind = op["kind"]
        if kind in ("settle", "release"):
            self.open_holds.pop(op["hold"])
        if ack["outcome"] != "ok":
            return
        if kind == "authorize":
            self.open_holds[result["hold"]] = op["credits"]
        elif kind == "authorize_short":
            self.short_holds.append((result["hold"], result["expires_at"]))
        elif kind in ("charge", "settle"):
            self.usages.append((result["usage"], result["account"]))


def next_operation(plan: WorkerPlan, state: WorkerState) -> Op | None:
    """The operation numbered ``state.next_seq``: the same one whenever it is asked for
    again with the same journal. After the budget, the open holds are settled or
    released one by one; then there is none."""
    seq = state.next_seq
    rng = random.Random(f"bank:{plan.seed}:{plan.worker}:{seq}")
    if seq >= plan.budget:
        if not state.open_holds:
            return None
        hold_id, credits = next(iter(state.open_holds.items()))
        if rng.random() < 0.7:
            return {"kind": "settle", "hold": hold_id, "credits": rng.randint(0, credits + 10)}
        return {"kind": "release", "hold": hold_id}
    kinds, weights = zip(*OPERATIONS, strict=True)
    kind = rng.choices(kinds, weights)[0]
    account = rng.choice(ACCOUNTS)
    if kind in ("settle", "release") and not state.open_holds:
        kind = "authorize"
    if kind == "refund_usage" and not state.usages:
        kind = "charge"
    if kind == "finish_expired" and not state.short_holds:
        kind = "authorize_short"
    if kind in ("charge", "authorize"):
        return {"kind": kind, "account": account, "credits": rng.randint(1, 25)}
    if kind == "authorize_short":
        ttl_ms = rng.randint(*SHORT_TTL_MS)
        return {"kind": kind, "account": account, "credits": rng.randint(1, 15), "ttl_ms": ttl_ms}
    if kind == "settle":
        hold_id = rng.choice(list(state.open_holds))
        credits = rng.randint(0, state.open_holds[hold_id] + 10)
        return {"kind": kind, "hold": hold_id, "credits": credits}
    if kind == "release":
        return {"kind": kind, "hold": rng.choice(list(state.open_holds))}
    if kind == "grant":
        return {"kind": kind, "account": account, "amount": rng.randint(1, 40)}
    if kind == "refund_credits":
        return {"kind": kind, "account": account, "amount": rng.randint(1, 15)}
    if kind == "refund_usage":
        usage_id, owner = rng.choice(state.usages)
        return {"kind": kind, "account": owner, "usage": usage_id}
    # A late settle or release of a short hold (preferably not one of the last few).
    hold_id, expires_at = rng.choice(state.short_holds[:-3] or state.short_holds)
    return {
        "kind": "finish_expired",
        "hold": hold_id,
        "expires_at": expires_at,
        "release": rng.random() < 0.5,
        "credits": rng.randint(0, 10),
    }


def _charged(charge: Charge) -> dict[str, Any]:
    return {
        "usage": charge.usage_id,
        "transaction": charge.transaction_id,
        "account": charge.account_id,
        "hold": charge.hold_id,
        "credits": charge.credits,
        "charged": charge.charged,
        "debited": charge.debited,
        "uncollected": charge.uncollected,
    }


def _held(hold: Hold) -> dict[str, Any]:
    return {
        "hold": hold.id,
        "account": hold.account_id,
        "credits": hold.credits,
        "reserved": hold.reserved,
        "status": hold.status.value,
        "expires_at": hold.expires_at.isoformat(),
    }


def _refunded(txn: Transaction) -> dict[str, Any]:
    return {
        "transaction": txn.id,
        "account": txn.account_id,
        "type": txn.type.value,
        "amount": txn.amount,
        "usage": txn.usage_id,
    }


def _refusal(error: CreditMeterError) -> dict[str, Any]:
    refusal: dict[str, Any] = {"error": type(error).__name__, "message": error.message}
    if isinstance(error, HoldNotPending):
        refusal["status"] = error.status
    if isinstance(error, InsufficientCredits):
        refusal["required"] = error.required
        refusal["available"] = error.available
    return refusal


def _call(meter: CreditMeter, op: Op, key: str) -> dict[str, Any]:
    kind = op["kind"]
    if kind == "charge":
        charge = meter.charge(op["account"], FEATURE, credits=op["credits"], idempotency_key=key)
        return _charged(charge)
    if kind in ("authorize", "authorize_short"):
        ttl = HOLD_TTL if kind == "authorize" else timedelta(milliseconds=op["ttl_ms"])
        hold = meter.authorize(
            op["account"], FEATURE, credits=op["credits"], ttl=ttl, idempotency_key=key
        )
        return _held(hold)
    if kind == "finish_expired":
        late = datetime.fromisoformat(op["expires_at"]) - datetime.now(UTC)
        time.sleep(max(late.total_seconds() + 0.05, 0))
        if op["release"]:
            return _held(meter.release(op["hold"], idempotency_key=key))
        return _charged(meter.settle(op["hold"], credits=op["credits"], idempotency_key=key))
    if kind == "settle":
        return _charged(meter.settle(op["hold"], credits=op["credits"], idempotency_key=key))
    if kind == "release":
        return _held(meter.release(op["hold"], idempotency_key=key))
    if kind == "grant":
        granted = meter.grant(op["account"], op["amount"], idempotency_key=key)
        return {
            "grant": granted.grant_id,
            "transaction": granted.transaction_id,
            "account": op["account"],
            "amount": granted.amount,
        }
    if kind == "refund_credits":
        return _refunded(meter.refund(op["account"], amount=op["amount"], idempotency_key=key))
    if kind == "refund_usage":
        return _refunded(meter.refund(op["account"], usage_id=op["usage"], idempotency_key=key))
    raise AssertionError(f"unknown operation {kind!r}")


def execute(meter: CreditMeter, op: Op, key: str) -> tuple[str, dict[str, Any]]:
    """``("ok", what the library returned)`` or ``("refused", the refusal)``; anything
    else (a database error, a bug) ends the worker."""
    try:
        return "ok", _call(meter, op, key)
    except CreditMeterError as error:
        return "refused", _refusal(error)


def _append(journal: IO[bytes], entry: Entry) -> None:
    journal.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
    journal.flush()
    os.fsync(journal.fileno())


def bank_process(plans: list[WorkerPlan]) -> None:
    """Runs in a spawned process: each worker in a thread of its own, all with one meter,
    each resuming from its journal and running until its budget is spent and no hold is
    left open. An unexpected error is written next to the worker's journal and ends the
    process."""
    failed = threading.Event()

    def run(plan: WorkerPlan, meter: CreditMeter) -> None:
        try:
            _work(plan, meter)
        except BaseException:
            plan.error_file.write_text(traceback.format_exc())
            failed.set()

    with (
        CreditMeter(plans[0].url, migrate=False, pool_size=len(plans)) as meter,
        plans[0].groups_file.open(
            "a", buffering=1
        ) as groups,  # a line at a time: killed any moment
    ):

        def grouped(operations: int) -> None:
            if operations > 1:
                groups.write(f"{operations}\n")

        meter.group_observers.append(grouped)
        threads = [threading.Thread(target=run, args=(plan, meter)) for plan in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failed.is_set():
        sys.exit(1)


def _work(plan: WorkerPlan, meter: CreditMeter) -> None:
    entries, end = read_journal(plan.journal)
    if plan.journal.exists():
        os.truncate(plan.journal, end)
    state = WorkerState.replay(entries)
    with plan.journal.open("ab") as journal:
        while (op := next_operation(plan, state)) is not None:
            seq = state.next_seq
            earlier = state.begun.get(seq)
            if earlier is not None and earlier != op:
                raise AssertionError(f"operation {seq} was begun as {earlier}, is now {op}")
            key = key_of(plan.worker, seq)
            _append(journal, {"event": "begin", "seq": seq, "key": key, "op": op, "t": time.time()})
            outcome, result = execute(meter, op, key)
            ack = {"event": "ack", "seq": seq, "key": key, "op": op}
            ack |= {"outcome": outcome, "result": result}
            if seq in plan.crash_after and earlier is None:
                with plan.crash_file.open("ab") as crashes:
                    _append(crashes, ack)
                os.kill(os.getpid(), signal.SIGKILL)
            _append(journal, ack)
            state.apply(ack)


# The test process: workers started, killed and restarted.


@dataclass
class Figures:
    attempted: int = 0
    acknowledged: int = 0
    refused: int = 0
    kills: int = 0
    in_flight: int = 0
    """Kills that left a ``begin`` with no ``ack``: a call was (or was about to be) running."""
    at_start: int = 0
    """Kills of a process none of whose workers had journalled anything yet since it was
    (re)started."""
    crashes: int = 0
    groups: int = 0
    """Groups of more than one operation committed."""
    retries: int = 0
    replayed: int = 0
    """Retries whose first attempt had been applied (the key was stored before the retry)."""
    expired: int = 0
    violations: int = 0
    problems: int = 0
    seconds: float = 0.0

    def line(self, engine: str, reliability: Reliability, workers: int, budget: int) -> str:
        return (
            f"bank test on {engine}: {self.attempted} operations attempted, "
            f"{self.acknowledged} acknowledged, {self.refused} refused; {self.kills} kills "
            f"({self.in_flight} mid-operation, {self.at_start} at start-up) and "
            f"{self.crashes} crashes after a call; {self.groups} groups committed; "
            f"{self.retries} retries "
            f"({self.replayed} already applied); {self.expired} holds expired; "
            f"{self.violations} violations, {self.problems} other problems "
            f"[{workers} workers x {budget} operations, seed {reliability.seed}, "
            f"{self.seconds:.1f} s]"
        )


class WorkerFailed(AssertionError):
    pass


class Fleet:
    """The worker processes (``THREADS`` workers each), started, killed and restarted by
    the test."""

    def __init__(self, plans: list[WorkerPlan]) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.plans = plans
        self.workers_of = [
            list(range(first, min(first + THREADS, len(plans))))
            for first in range(0, len(plans), THREADS)
        ]
        """The workers of each process."""
        self.running: dict[int, BaseProcess] = {}
        self.started_with: dict[int, int] = {}
        """Complete journal lines when each running worker was started."""
        self.lines = [0] * len(plans)
        self.offsets = [0] * len(plans)
        self.crashed = [0] * len(plans)

    def start(self, process_number: int) -> None:
        workers = self.workers_of[process_number]
        for worker in workers:
            self.started_with[worker] = len(read_journal(self.plans[worker].journal)[0])
        process = self.context.Process(
            target=bank_process,
            args=([self.plans[w] for w in workers],),
            name=f"bank-process-{process_number}",
        )
        process.start()
        self.running[process_number] = process

    def _ended(self, process_number: int, process: BaseProcess) -> None:
        if process.exitcode != 0:
            details = []
            for worker in self.workers_of[process_number]:
                error = self.plans[worker].error_file
                if error.exists():
                    details.append(f"worker {worker}:\n{error.read_text()}")
            detail = "\n".join(details) or "(no traceback written)"
            raise WorkerFailed(
                f"process {process_number} exited with {process.exitcode}:\n{detail}"
            )

    def _noted_crashes(self, process_number: int) -> int:
        """The crashes the process's workers noted since last counted (and now counted)."""
        new = 0
        for worker in self.workers_of[process_number]:
            noted = len(read_journal(self.plans[worker].crash_file)[0])
            new += noted - self.crashed[worker]
            self.crashed[worker] = noted
        return new

    def reap(self) -> int:
        """Forget the processes that have finished, and start again those that a worker
        crashed on purpose (how many crashes); one that failed fails the test."""
        crashed = 0
        for process_number, process in list(self.running.items()):
            if process.exitcode is not None:
                del self.running[process_number]
                process.join()
                noted = self._noted_crashes(process_number)
                if process.exitcode == -signal.SIGKILL and noted:
                    crashed += noted
                    self.start(process_number)
                else:
                    self._ended(process_number, process)
        return crashed

    def progress(self) -> int:
        """Lines the workers have journalled so far, read incrementally."""
        for worker, plan in enumerate(self.plans):
            if not plan.journal.exists():
                continue
            with plan.journal.open("rb") as journal:
                journal.seek(self.offsets[worker])
                data = journal.read()
            end = data.rfind(b"\n") + 1
            self.lines[worker] += data.count(b"\n", 0, end)
            self.offsets[worker] += end
        return sum(self.lines)

    def working(self) -> list[int]:
        """The running processes that have journalled something since they were started
        (killing one still starting up again and again would only slow the run down)."""
        return [
            p
            for p in sorted(self.running)
            if any(self.lines[w] > self.started_with[w] for w in self.workers_of[p])
        ]

    def kill(self, process_number: int) -> str | None:
        """SIGKILL the process and start it again; where its workers were (``"start-up"``,
        ``"mid-operation"``: one of them in a call, ``"between"``), or ``None`` if it had
        finished already."""
        process = self.running.pop(process_number)
        process.kill()
        process.join()
        if process.exitcode != -signal.SIGKILL:
            self._ended(process_number, process)
            return None
        self._noted_crashes(process_number)  # a crash the kill cut short is no crash
        journals = [read_journal(self.plans[w].journal)[0] for w in self.workers_of[process_number]]
        started = [self.started_with[w] for w in self.workers_of[process_number]]
        where = "between"
        if all(len(entries) == n for entries, n in zip(journals, started, strict=True)):
            where = "start-up"
        elif any(entries and entries[-1]["event"] == "begin" for entries in journals):
            where = "mid-operation"
        self.start(process_number)
        return where

    def stop(self) -> None:
        for process in self.running.values():
            process.kill()
            process.join()
        self.running.clear()


def run_fleet(
    plans: list[WorkerPlan], rng: random.Random, kills: int, seconds: float, figures: Figures
) -> None:
    """Run the workers to their end, killing one at each of ``kills`` random points of
    their progress (and starting it again); fail if they take more than ``seconds``."""
    fleet = Fleet(plans)
    total_lines = 2 * sum(plan.budget for plan in plans)
    points = sorted(rng.uniform(0.05, 0.8) * total_lines for _ in range(kills))
    deadline = time.monotonic() + seconds
    for process_number in range(len(fleet.workers_of)):
        fleet.start(process_number)
    try:
        while fleet.running:
            figures.crashes += fleet.reap()
            while points and fleet.progress() >= points[0] and fleet.working():
                process_number = rng.choice(fleet.working())
                time.sleep(rng.uniform(0, KILL_JITTER))
                where = fleet.kill(process_number)
                if where is None:
                    continue  # it had just finished: kill another
                points.pop(0)
                figures.kills += 1
                figures.in_flight += where == "mid-operation"
                figures.at_start += where == "start-up"
            if time.monotonic() > deadline:
                raise AssertionError(f"the workers did not finish within {seconds} s")
            time.sleep(0.005)
    finally:
        fleet.stop()


# What the books must say afterwards.


@dataclass(frozen=True)
class Snapshot:
    """The rows the checks compare with the journals, read straight from the tables."""

    usage: dict[str, tuple[str, int, int, int]]
    """usage id → (account, charged, debited, refunded)"""
    transactions: dict[str, tuple[str, str, int]]
    """transaction id → (account, type, amount)"""
    holds: dict[str, tuple[str, str, datetime, str | None]]
    """hold id → (account, status, expires_at, usage id)"""
    keys: dict[str, tuple[str, Any, datetime]]
    """idempotency key → (operation, stored result, created_at)"""

    @classmethod
    def read(cls, meter: CreditMeter) -> Snapshot:
        u, t, h, k = usage_records.c, ledger_transactions.c, holds.c, idempotency_keys.c
        with meter.db.read() as conn:
            usage = conn.execute(sa.select(u.id, u.account_id, u.charged, u.debited, u.refunded))
            txns = conn.execute(sa.select(t.id, t.account_id, t.type, t.amount))
            hold_rows = conn.execute(
                sa.select(h.id, h.account_id, h.status, h.expires_at, h.usage_id)
            )
            key_rows = conn.execute(sa.select(k.key, k.operation, k.result, k.created_at))
            return cls(
                usage={r[0]: (r[1], r[2], r[3], r[4]) for r in usage},
                transactions={r[0]: (r[1], r[2], r[3]) for r in txns},
                holds={r[0]: (r[1], r[2], r[3], r[4]) for r in hold_rows},
                keys={r[0]: (r[1], r[2], r[3]) for r in key_rows},
            )


@dataclass
class Journals:
    """Every worker's journal, checked for form: one ack per operation, in order, each
    after at least one begin of the same operation."""

    acks: list[Entry] = field(default_factory=list)
    crashed: list[Entry] = field(default_factory=list)
    """What the calls the workers crashed after had returned."""
    begins: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, plans: list[WorkerPlan]) -> Journals:
        journals = cls()
        for plan in plans:
            journals.add(plan)
        return journals

    def add(self, plan: WorkerPlan) -> None:
        self.crashed += read_journal(plan.crash_file)[0]
        entries, end = read_journal(plan.journal)
        if end != plan.journal.stat().st_size:
            self.problems.append(f"worker {plan.worker}: journal ends with a torn line")
        acks = [e for e in entries if e["event"] == "ack"]
        if [a["seq"] for a in acks] != list(range(len(acks))) or len(acks) < plan.budget:
            self.problems.append(f"worker {plan.worker}: acknowledged {len(acks)} out of order")
        for entry in entries:
            if entry["event"] == "begin":
                self.begins[entry["key"]].append(entry)
        for ack in acks:
            begun = self.begins.get(ack["key"], [])
            if not begun or any(b["op"] != ack["op"] for b in begun):
                self.problems.append(f"{ack['key']}: begun as {begun}, acknowledged as {ack}")
        state = WorkerState.replay(entries)
        if state.open_holds:
            self.problems.append(f"worker {plan.worker} left holds open: {state.open_holds}")
        self.acks += acks

    def ok(self, *kinds: str) -> list[Entry]:
        return [a for a in self.acks if a["outcome"] == "ok" and a["op"]["kind"] in kinds]


class Audit:
    """The books after the run against the journals; every difference is a problem."""

    def __init__(
        self,
        journals: Journals,
        before: Snapshot,
        after: Snapshot,
        initial: dict[str, int],
    ) -> None:
        self.journals = journals
        self.before = before
        self.after = after
        self.initial = initial
        self.problems: list[str] = list(journals.problems)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def run(self) -> list[str]:
        self.crashes()
        self.refusals()
        self.usage()
        self.transactions()
        self.holds()
        self.keys()
        return self.problems

    def crashes(self) -> None:
        """An operation applied before its worker crashed was retried with its key and
        returned what it had returned the first time (and so was not applied again)."""
        final = {a["key"]: a for a in self.journals.acks}
        for first in self.journals.crashed:
            ack = final.get(first["key"])
            self.expect(ack is not None, f"{first['key']} was never retried")
            if ack is None or first["outcome"] != "ok":
                continue
            self.expect(
                (ack["outcome"], ack["result"]) == ("ok", first["result"]),
                f"{first['key']} returned {first['result']}, then on retry "
                f"{ack['outcome']} {ack['result']}",
            )
            stored = self.after.keys.get(first["key"])
            retried = datetime.fromtimestamp(self.journals.begins[first["key"]][-1]["t"], UTC)
            self.expect(
                stored is not None and stored[2] < retried,
                f"{first['key']} was applied before the crash, its key stored {stored}",
            )

    def refusals(self) -> None:
        """Only the expected refusals: short of credits (charge, authorize), a late finish
        of a short hold (always, as expired), the refund of a usage with nothing left."""
        refundable: dict[str, int] = {}
        for ack in self.journals.acks:
            op, result, ok = ack["op"], ack["result"], ack["outcome"] == "ok"
            kind = op["kind"]
            if kind in ("charge", "settle") and ok:
                refundable[result["usage"]] = result["charged"]
            if kind in ("charge", "authorize", "authorize_short") and not ok:
                self.expect(
                    result["error"] == "InsufficientCredits"
                    and result["available"] < result["required"],
                    f"{ack['key']} {op}: refused {result}",
                )
            elif kind == "finish_expired":
                self.expect(
                    not ok and result.get("status") == "expired",
                    f"{ack['key']} {op}: a hold past its expiry gave {ack['outcome']} {result}",
                )
            elif kind == "refund_usage":
                left = refundable.get(op["usage"], 0)
                if ok:
                    self.expect(result["amount"] == left > 0, f"{ack['key']}: refunded {result}")
                    refundable[op["usage"]] = 0
                else:
                    self.expect(
                        left == 0 and result["error"] == "InvalidRequest",
                        f"{ack['key']} {op}: {left} refundable, refused {result}",
                    )
            else:
                self.expect(ok, f"{ack['key']} {op}: refused {result}")

    def usage(self) -> None:
        """The usage records are exactly the acknowledged usages, each charged as told."""
        acknowledged = self.journals.ok("charge", "settle")
        ids = [a["result"]["usage"] for a in acknowledged]
        duplicated = [i for i, n in Counter(ids).items() if n > 1]
        self.expect(not duplicated, f"usage ids acknowledged twice: {duplicated}")
        refunded: Counter[str] = Counter()
        for ack in self.journals.ok("refund_usage"):
            refunded[ack["op"]["usage"]] += ack["result"]["amount"]
        for ack in acknowledged:
            r = ack["result"]
            row = self.after.usage.get(r["usage"])
            told = (r["account"], r["charged"], 0, refunded[r["usage"]])
            self.expect(row == told, f"{ack['key']}: usage {r['usage']} is {row}, not {told}")
            if ack["op"]["kind"] == "charge":
                self.expect(r["charged"] == ack["op"]["credits"], f"{ack['key']}: charged {r}")
        unknown = set(self.after.usage) - set(ids)
        self.expect(not unknown, f"usage records no journal acknowledges: {sorted(unknown)}")

    def transactions(self) -> None:
        """The ledger is the setup's transactions and the acknowledged ones, nothing else."""
        expected = dict(self.before.transactions)
        for ack in self.journals.ok("charge", "settle"):
            r = ack["result"]
            expected[r["transaction"]] = (r["account"], "usage", -r["charged"])
        for ack in self.journals.ok("grant"):
            r = ack["result"]
            self.expect(r["amount"] == ack["op"]["amount"], f"{ack['key']}: granted {r}")
            expected[r["transaction"]] = (r["account"], "grant", r["amount"])
        for ack in self.journals.ok("refund_credits", "refund_usage"):
            r = ack["result"]
            if ack["op"]["kind"] == "refund_credits":
                self.expect(r["amount"] == ack["op"]["amount"], f"{ack['key']}: refunded {r}")
            expected[r["transaction"]] = (r["account"], "refund", r["amount"])
        for txn_id, told in expected.items():
            row = self.after.transactions.get(txn_id)
            self.expect(row == told, f"transaction {txn_id} is {row}, acknowledged as {told}")
        unknown = {t: v for t, v in self.after.transactions.items() if t not in expected}
        self.expect(not unknown, f"transactions no journal acknowledges: {unknown}")
        acknowledged_count = len(
            self.journals.ok("charge", "settle", "grant", "refund_credits", "refund_usage")
        )
        self.expect(
            len(expected) == len(self.before.transactions) + acknowledged_count,
            "two acknowledged operations were given the same transaction id",
        )

    def holds(self) -> None:
        """The holds are exactly the acknowledged ones: the long ones settled (into the
        acknowledged usage) or released, the short ones expired; none is pending."""
        expected: dict[str, tuple[str, str | None]] = {}
        for ack in self.journals.ok("authorize"):
            expected[ack["result"]["hold"]] = ("pending", None)
        for ack in self.journals.ok("authorize_short"):
            expected[ack["result"]["hold"]] = ("expired", None)
        for ack in self.journals.ok("settle"):
            expected[ack["op"]["hold"]] = ("settled", ack["result"]["usage"])
        for ack in self.journals.ok("release"):
            expected[ack["op"]["hold"]] = ("released", None)
        for hold_id, told in expected.items():
            row = self.after.holds.get(hold_id)
            found = None if row is None else (row[1], row[3])
            self.expect(found == told, f"hold {hold_id} is {found}, should be {told}")
        unknown = set(self.after.holds) - set(expected)
        self.expect(not unknown, f"holds no journal acknowledges: {sorted(unknown)}")
        now = datetime.now(UTC)
        pending = [h for h, row in self.after.holds.items() if row[1] == "pending"]
        overdue = [h for h in pending if self.after.holds[h][2] <= now]
        self.expect(not overdue, f"holds still pending past their expiry: {overdue}")
        self.expect(not pending, f"holds still pending: {pending}")

    def keys(self) -> None:
        """Each acknowledged operation stored its key once, with the ids it returned; a
        refused one stored nothing; no other key exists."""
        for ack in self.journals.acks:
            stored = self.after.keys.get(ack["key"])
            if ack["outcome"] != "ok":
                self.expect(stored is None, f"{ack['key']} was refused but stored {stored}")
                continue
            if stored is None:
                self.problems.append(f"{ack['key']} acknowledged but not stored")
                continue
            operation, result, _ = stored
            verb = VERB.get(ack["op"]["kind"])
            self.expect(operation == verb, f"{ack['key']} stored as {operation}, not {verb}")
            told = stored_ids(ack)
            kept = {k: result.get(k) for k in told}
            self.expect(kept == told, f"{ack['key']} stored {kept}, returned {told}")
        journalled = {a["key"] for a in self.journals.acks}
        unknown = set(self.after.keys) - set(self.before.keys) - journalled
        self.expect(not unknown, f"idempotency keys no journal names: {sorted(unknown)}")

    def balances(self, available: dict[str, int]) -> None:
        """Each account's available = initial + grants + refunds - charges, as journalled."""
        expected = dict(self.initial)
        for ack in self.journals.ok("grant", "refund_credits", "refund_usage"):
            expected[ack["result"]["account"]] += ack["result"]["amount"]
        for ack in self.journals.ok("charge", "settle"):
            expected[ack["result"]["account"]] -= ack["result"]["charged"]
        self.expect(available == expected, f"available {available}, journals say {expected}")

    def count(self, figures: Figures) -> None:
        figures.attempted = len(self.journals.acks)
        figures.acknowledged = sum(a["outcome"] == "ok" for a in self.journals.acks)
        figures.refused = figures.attempted - figures.acknowledged
        figures.expired = sum(row[1] == "expired" for row in self.after.holds.values())
        for ack in self.journals.acks:
            begun = self.journals.begins[ack["key"]]
            figures.retries += len(begun) - 1
            stored = self.after.keys.get(ack["key"])
            if len(begun) > 1 and stored is not None:
                last_begun = datetime.fromtimestamp(begun[-1]["t"], UTC)
                figures.replayed += stored[2] < last_begun


def crash_points(reliability: Reliability, worker: int, budget: int) -> frozenset[int]:
    rng = random.Random(f"crash:{reliability.seed}:{worker}")
    return frozenset(rng.sample(range(budget), CRASHES * reliability.scale))


def stored_ids(ack: Entry) -> dict[str, Any]:
    """What the stored result of an acknowledged operation must say, in its own names."""
    kind, r = ack["op"]["kind"], ack["result"]
    if kind in ("charge", "settle", "finish_expired") and "usage" in r:
        return {"usage_id": r["usage"], "transaction_id": r["transaction"], "charged": r["charged"]}
    if kind in ("authorize", "authorize_short", "release", "finish_expired"):
        return {"id": r["hold"], "status": r["status"], "reserved": r["reserved"]}
    if kind == "grant":
        return {"grant_id": r["grant"], "transaction_id": r["transaction"], "amount": r["amount"]}
    return {"id": r["transaction"], "amount": r["amount"]}


def prepare(url: str) -> tuple[dict[str, int], Snapshot]:
    """The schema, the feature and the accounts, each with its initial grant."""
    with CreditMeter(url) as meter:
        meter.put_feature(FEATURE, rates={"tokens": 1})
        for account in ACCOUNTS:
            meter.create_account(account, name=account)
            meter.grant(account, INITIAL, idempotency_key=f"setup-{account}")
        initial = {account: meter.balance(account).available for account in ACCOUNTS}
        return initial, Snapshot.read(meter)


def creditmeter_verify(url: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("creditmeter")
    return subprocess.run(
        [str(command), "verify", url], capture_output=True, text=True, timeout=60, check=False
    )


def test_killed_workers_leave_books_that_balance(
    migrated_url: str, tmp_path: Path, reliability: Reliability
) -> None:
    started = time.monotonic()
    engine = sa.make_url(migrated_url).get_backend_name()
    budget, kills = BUDGET * reliability.scale, KILLS * reliability.scale
    initial, before = prepare(migrated_url)
    plans = [
        WorkerPlan(
            migrated_url,
            worker,
            reliability.seed,
            budget,
            tmp_path / f"worker-{worker}.jsonl",
            crash_points(reliability, worker, budget),
        )
        for worker in range(WORKERS)
    ]
    figures = Figures()
    rng = random.Random(f"kills:{reliability.seed}:{engine}")
    run_fleet(plans, rng, kills, DEADLINE * reliability.scale, figures)
    journals = Journals.read(plans)
    short_ends = [
        datetime.fromisoformat(a["result"]["expires_at"]) for a in journals.ok("authorize_short")
    ]
    late = max(short_ends, default=datetime.now(UTC)) - datetime.now(UTC)
    time.sleep(max(late.total_seconds() + 0.05, 0))
    with CreditMeter(migrated_url, migrate=False) as meter:
        meter.sweep()
        after = Snapshot.read(meter)
        violations = meter.verify()
        balances = {account: meter.balance(account) for account in ACCOUNTS}
    verified = creditmeter_verify(migrated_url)
    audit = Audit(journals, before, after, initial)
    audit.run()
    audit.balances({account: b.available for account, b in balances.items()})
    for account, b in balances.items():
        audit.expect((b.held, b.debt) == (0, 0), f"{account}: held {b.held}, debt {b.debt}")
    audit.count(figures)
    figures.groups = sum(
        len(plan.groups_file.read_text().split()) for plan in plans if plan.groups_file.exists()
    )
    figures.violations = len(violations)
    figures.problems = len(audit.problems)
    figures.seconds = time.monotonic() - started
    print(figures.line(engine, reliability, WORKERS, budget))
    assert violations == []
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok: no violations" in verified.stdout
    assert audit.problems == [], "\n".join(audit.problems[:40])
    assert figures.kills == kills
    # A crash point is skipped when a kill had interrupted the operation's first attempt.
    assert 0 < figures.crashes <= WORKERS * CRASHES * reliability.scale
    assert figures.replayed > 0, "no retry met an operation applied before its kill"
    assert figures.groups > 0, "no operations met in a group"
    assert figures.refused > 0, "no operation was refused: the accounts never ran short"
    assert figures.expired > 0, "no hold expired"
