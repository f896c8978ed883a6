"""Embedded authorize + settle pairs per second on SQLite, against the same work in raw SQL.

The contenders, each on its own database file made by the library's migrations (same
tables, indexes and constraints), each with WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``
and one commit per operation:

- ``creditmeter``: ``authorize(credits=10)`` then ``settle(credits=7)`` through the library;
- ``sqlite3``: the minimal statements on one held connection — a hold is a conditional
  UPDATE of the account's ``held`` and an INSERT of the hold; a settle is an UPDATE of
  ``balance``/``held`` (RETURNING), an UPDATE of the hold and an INSERT of a ledger row;
- ``sqlite3, the library's rows``: the same connection and durability writing every row
  the library writes for a pair (its schema asks for more: a hold's allocation to a grant,
  the grant's ``held`` and ``remaining``, two postings, a usage record), with the fewest
  statements and no reads but what a conditional UPDATE … RETURNING gives — a hold is a
  conditional UPDATE of the account and of its one grant, an INSERT of the hold and of its
  allocation; a settle is an UPDATE of the hold, the grant and the account (RETURNING),
  and INSERTs of the ledger row, its two postings (one statement) and the usage record.
  Reported for information as creditmeter / this contender: the library against raw SQL
  doing the same writes, so what is left of the gap is the library's layers and reads,
  while the target's ratio mixes those with the rows its schema adds;
- ``SQLAlchemy Core``: the same statements as ``text()``, with a pool checkout per
  transaction as the library does; reported for information, to show what the layers
  under the library cost by themselves;
- the library and ``sqlite3`` again at ``synchronous=NORMAL`` (no fsync per commit in WAL
  mode), for information: with the disk out of the way the ratio shows the CPU cost of
  the library's layers, and it does not rise when other processes keep the disk busy.

They run in alternating rounds and each figure is the median of its rounds, so that drift
of the shared machine hits all of them alike; a ratio is the median of the rounds' ratios.
The target: creditmeter / sqlite3 ≥ 0.5 at FULL.
"""

from __future__ import annotations

import cProfile
import itertools
import json
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event

from benchmarks import Result, compared, counting_statements, median, where_time_goes
from creditmeter import CreditMeter
from creditmeter.core.types import SystemAccount, wallet

ACCOUNT = "bench"
FEATURE = "generate"
HELD = 10
CHARGED = 7
GRANTED = 10**12
ROUNDS = 5
PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000")


class Contender(Protocol):
    label: str

    def pair(self) -> None: ...

    def close(self) -> None: ...


def _prepared_meter(path: Path) -> CreditMeter:
    """A meter on a new database: one fixed-cost feature, one account with a large grant."""
    meter = CreditMeter(f"sqlite:///{path}")
    meter.put_feature(FEATURE, rates={"requests": HELD})
    meter.create_account(ACCOUNT)
    meter.grant(ACCOUNT, GRANTED)
    return meter


class Library:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.label = f"creditmeter {synchronous}"
        self.meter = _prepared_meter(path)
        if synchronous != "FULL":
            # After the library's own set-up of each new connection; then new connections,
            # the writer it holds on to included.
            pragma = f"PRAGMA synchronous={synchronous}"
            event.listen(self.meter.db.engine, "connect", lambda dbapi, _: dbapi.execute(pragma))
            self.meter.db.dispose()

    def pair(self) -> None:
        hold = self.meter.authorize(ACCOUNT, FEATURE, credits=HELD)
        self.meter.settle(hold.id, credits=CHARGED)

    def close(self) -> None:
        self.meter.close()


# The minimal statements, on the library's own tables.
RESERVE = "UPDATE accounts SET held = held + :n WHERE id = :account AND balance - held >= :n"
INSERT_HOLD = (
    "INSERT INTO holds (id, account_id, feature_key, pool, credits, reserved, unlimited,"
    " status, estimate, metadata, created_at, expires_at) VALUES (:id, :account, :feature,"
    " :feature, :n, :n, 0, 'pending', '{}', '{}', :now, :expires)"
)
CHARGE = (
    "UPDATE accounts SET balance = balance - :charged, held = held - :held"
    " WHERE id = :account RETURNING balance"
)
FINISH_HOLD = (
    "UPDATE holds SET status = 'settled', finished_at = :now, usage_id = :usage"
    " WHERE id = :id AND status = 'pending'"
)
INSERT_TRANSACTION = (
    "INSERT INTO ledger_transactions (id, account_id, type, amount, balance_before,"
    " balance_after, description, usage_id, hold_id, metadata, created_at) VALUES (:txn,"
    " :account, 'usage', :amount, :before, :after, 'generate: 7 credits', :usage, :id,"
    " :transaction_metadata, :now)"
)
# What the library stores with a usage transaction (a parameter: SQLAlchemy's text() would
# read the JSON's ``:null`` as one).
TRANSACTION_METADATA = json.dumps(
    {"feature": FEATURE, "model": None, "member": None}, separators=(",", ":")
)

# The rest of the library's rows: the hold's grant, its allocation, postings, usage record.
RESERVE_GRANT = "UPDATE grants SET held = held + :n WHERE id = :grant AND remaining - held >= :n"
INSERT_ALLOCATION = (
    "INSERT INTO hold_allocations (hold_id, grant_id, position, credits)"
    " VALUES (:id, :grant, 0, :n)"
)
CHARGE_GRANT = (
    "UPDATE grants SET remaining = remaining - :charged, held = held - :held WHERE id = :grant"
)
INSERT_POSTINGS = (
    "INSERT INTO postings (transaction_id, ledger_account, grant_id, amount)"
    " VALUES (:txn, :wallet, :grant, :amount), (:txn, :consumption, NULL, :charged)"
)
INSERT_USAGE = (
    "INSERT INTO usage_records (id, account_id, feature_key, feature_version, pool,"
    " quantities, credits, charged, debited, uncollected, refunded, unlimited, success,"
    " hold_id, transaction_id, metadata, created_at) VALUES (:usage, :account, :feature,"
    " :version, :feature, '{}', :charged, :charged, 0, 0, 0, 0, 1, :id, :txn, '{}', :now)"
)


def _stamp(at: datetime) -> str:
    """A UTC time as the library stores it on SQLite (naive ISO text)."""
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


class _Ids:
    """Identifiers and times for the raw contenders' rows."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def hold(self) -> dict[str, Any]:
        n = next(self.counter)
        now = datetime.now(UTC)
        return {
            "id": f"hold_{n:026d}",
            "usage": f"use_{n:026d}",
            "txn": f"txn_{n:026d}",
            "account": ACCOUNT,
            "feature": FEATURE,
            "n": HELD,
            "now": _stamp(now),
            "expires": _stamp(now + timedelta(minutes=15)),
        }


def _settle_params(hold: dict[str, Any]) -> dict[str, Any]:
    return {
        **hold,
        "now": _stamp(datetime.now(UTC)),
        "charged": CHARGED,
        "held": HELD,
        "amount": -CHARGED,
        "transaction_metadata": TRANSACTION_METADATA,
    }


def _charged(settle: dict[str, Any], balance: int) -> dict[str, Any]:
    """The settle's parameters with the balance the charge left, for the ledger row."""
    return {**settle, "before": balance + CHARGED, "after": balance}


class RawSqlite:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.label = f"sqlite3 {synchronous}"
        _prepared_meter(path).close()
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (*PRAGMAS, f"synchronous={synchronous}"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.ids = _Ids()

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        yield self.conn
        self.conn.execute("COMMIT")

    def pair(self) -> None:
        hold = self.ids.hold()
        with self._immediate() as c:
            if c.execute(RESERVE, hold).rowcount != 1:
                raise RuntimeError("short of credits")
            c.execute(INSERT_HOLD, hold)
        with self._immediate() as c:
            settle = _settle_params(hold)
            [(balance,)] = c.execute(CHARGE, settle).fetchall()
            settle = _charged(settle, balance)
            if c.execute(FINISH_HOLD, settle).rowcount != 1:
                raise RuntimeError("hold not pending")
            c.execute(INSERT_TRANSACTION, settle)

    def close(self) -> None:
        self.conn.close()


class RawSqliteLibraryRows(RawSqlite):
    """``RawSqlite`` writing the rows the library writes for a pair."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        super().__init__(path, synchronous)
        self.label = f"sqlite3 library rows {synchronous}"
        # Read once: the account's one grant, and the feature's version for usage records.
        [(grant,)] = self.conn.execute(
            "SELECT id FROM grants WHERE account_id = ?", (ACCOUNT,)
        ).fetchall()
        [(version,)] = self.conn.execute(
            "SELECT version FROM features WHERE key = ?", (FEATURE,)
        ).fetchall()
        self.rows = {
            "grant": grant,
            "version": version,
            "wallet": wallet(ACCOUNT),
            "consumption": SystemAccount.CONSUMPTION.value,
        }

    def pair(self) -> None:
        hold = {**self.ids.hold(), **self.rows}
        with self._immediate() as c:
            if c.execute(RESERVE, hold).rowcount != 1:
                raise RuntimeError("short of credits")
            if c.execute(RESERVE_GRANT, hold).rowcount != 1:
                raise RuntimeError("short of granted credits")
            c.execute(INSERT_HOLD, hold)
            c.execute(INSERT_ALLOCATION, hold)
        with self._immediate() as c:
            settle = _settle_params(hold)
            if c.execute(FINISH_HOLD, settle).rowcount != 1:
                raise RuntimeError("hold not pending")
            c.execute(CHARGE_GRANT, settle)
            [(balance,)] = c.execute(CHARGE, settle).fetchall()
            settle = _charged(settle, balance)
            c.execute(INSERT_TRANSACTION, settle)
            c.execute(INSERT_POSTINGS, settle)
            c.execute(INSERT_USAGE, settle)


def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.isolation_level = None
    for pragma in PRAGMAS:
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _begin_immediate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Core:
    label = "Core FULL"

    def __init__(self, path: Path) -> None:
        _prepared_meter(path).close()
        self.engine = sa.create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(self.engine, "connect", _configure)
        event.listen(self.engine, "begin", _begin_immediate)
        self.ids = _Ids()
        self.reserve = sa.text(RESERVE)
        self.insert_hold = sa.text(INSERT_HOLD)
        self.charge = sa.text(CHARGE)
        self.finish_hold = sa.text(FINISH_HOLD)
        self.insert_transaction = sa.text(INSERT_TRANSACTION)

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            conn.begin()
            yield conn
            conn.commit()

    def pair(self) -> None:
        hold = self.ids.hold()
        with self._write() as conn:
            if conn.execute(self.reserve, hold).rowcount != 1:
                raise RuntimeError("short of credits")
            conn.execute(self.insert_hold, hold)
        with self._write() as conn:
            settle = _settle_params(hold)
            balance = conn.execute(self.charge, settle).scalar_one()
            settle = _charged(settle, balance)
            if conn.execute(self.finish_hold, settle).rowcount != 1:
                raise RuntimeError("hold not pending")
            conn.execute(self.insert_transaction, settle)

    def close(self) -> None:
        self.engine.dispose()


def _rate(contender: Contender, pairs: int, seconds: float) -> float:
    """Pairs per second over ``pairs`` pairs, or fewer if ``seconds`` run out first."""
    start = time.perf_counter()
    deadline = start + seconds
    done = 0
    while done < pairs:
        contender.pair()
        done += 1
        if done % 20 == 0 and time.perf_counter() > deadline:
            break
    return done / (time.perf_counter() - start)


Made = Callable[[Path], Contender]


def alternated(
    made: list[Made], quick: bool, rounds: int = ROUNDS
) -> tuple[list[str], dict[str, list[float]]]:
    """The contenders made each on a database file of its own, then their pairs/s in
    ``rounds`` alternating rounds (after a warm-up): their labels, and their rates by label."""
    pairs, seconds, warmup = (200, 1.0, 50) if quick else (1000, 3.0, 200)
    rates: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="creditmeter-bench-") as tmp:
        contenders: list[Contender] = []
        try:
            for i, make in enumerate(made):
                contenders.append(make(Path(tmp) / f"contender-{i}.db"))
            for contender in contenders:
                _rate(contender, warmup, seconds)
            for round_ in range(rounds):
                for contender in contenders:
                    rates[contender.label].append(_rate(contender, pairs, seconds))
                summary = ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items())
                print(f"  embedded round {round_ + 1}/{rounds}: {summary} pairs/s", file=sys.stderr)
        finally:
            for contender in contenders:
                contender.close()
    return [c.label for c in contenders], rates


def ratio_of_rounds(rates: dict[str, list[float]], figure: str, baseline: str) -> float:
    """The median of the ratios of adjacent measurements, round by round."""
    return median([f / b for f, b in zip(rates[figure], rates[baseline], strict=True)])


def run(quick: bool) -> list[Result]:
    labels, rates = alternated(
        [
            Library,
            RawSqlite,
            RawSqliteLibraryRows,
            Core,
            partial(Library, synchronous="NORMAL"),
            partial(RawSqlite, synchronous="NORMAL"),
        ],
        quick,
    )
    library, raw, raw_rows, core, library_normal, raw_normal = (
        median(rates[label]) for label in labels
    )
    ratio = partial(ratio_of_rounds, rates)

    return [
        compared(
            "embedded authorize+settle, SQLite FULL",
            library,
            "pairs/s",
            raw,
            "pairs/s sqlite3 FULL",
            target="ratio ≥ 0.5",
            meets=lambda r: r >= 0.5,
            ratio=ratio("creditmeter FULL", "sqlite3 FULL"),
        ),
        compared(
            "  against sqlite3 writing the library's rows",
            library,
            "pairs/s",
            raw_rows,
            "pairs/s sqlite3 library rows FULL",
            target="(information)",
            meets=None,
            ratio=ratio("creditmeter FULL", "sqlite3 library rows FULL"),
        ),
        compared(
            "  the sqlite3 statements, SQLAlchemy Core",
            core,
            "pairs/s",
            raw,
            "pairs/s sqlite3 FULL",
            target="(information)",
            meets=None,
            ratio=ratio("Core FULL", "sqlite3 FULL"),
        ),
        compared(
            "  both at synchronous=NORMAL (no fsync)",
            library_normal,
            "pairs/s",
            raw_normal,
            "pairs/s sqlite3 NORMAL",
            target="(information)",
            meets=None,
            ratio=ratio("creditmeter NORMAL", "sqlite3 NORMAL"),
        ),
    ]


# Profile: statements per operation and where a pair's time goes.


def profile(quick: bool) -> str:
    """Statements per authorize and per settle, and a cProfile of the library's pairs."""
    pairs = 200 if quick else 1000
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="creditmeter-bench-") as tmp:
        library = Library(Path(tmp) / "profile.db")
        try:
            for _ in range(50):
                library.pair()
            engine = library.meter.db.engine
            with counting_statements(engine) as authorize_sql:
                hold = library.meter.authorize(ACCOUNT, FEATURE, credits=HELD)
            with counting_statements(engine) as settle_sql:
                library.meter.settle(hold.id, credits=CHARGED)
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(pairs):
                library.pair()
            profiler.disable()
        finally:
            library.close()
    for verb, statements, raw, rows in (
        ("authorize", authorize_sql, 2, 4),
        ("settle", settle_sql, 3, 6),
    ):
        lines.append(
            f"SQL statements per {verb}: {len(statements)} (+ COMMIT); "
            f"sqlite3 baseline: {raw + 1} (+ COMMIT), with the library's rows: {rows + 1}"
        )
        lines += [f"    {s}" for s in statements]
    lines.append("")
    lines += where_time_goes(profiler, pairs, "pair")
    return "\n".join(lines)
