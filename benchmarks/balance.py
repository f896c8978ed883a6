"""In-process balance reads (``meter.balance(account)``) on a small and a large ledger.

For each engine two databases are built: one with about 10 thousand ledger transactions
and one with about 1 million (200 thousand with ``--quick``), each with two postings and
one usage record per transaction. The measured account, its plan and grants and a few
dozen operations of its history are made through the library; the bulk of the history
(mostly other accounts', one transaction in a hundred the measured account's) is written
with bulk SQL and need not balance: ``INSERT … SELECT`` from ``generate_series`` on
PostgreSQL and from a recursive CTE on SQLite (faster than ``executemany``, which spends
most of its time making rows in Python), with the secondary indexes of the bulk tables
dropped and built again afterwards and, on PostgreSQL, no foreign-key triggers during the
load. Reads of the two databases alternate in rounds, so that drift of the shared machine
hits both sizes alike.

Targets: p99 ≤ 5 ms at both sizes; p50 on the large ledger ≤ 1.2 × p50 on the small one.
PostgreSQL is the one named by ``CREDITMETER_BENCH_POSTGRES_URL`` (by default the local
server's ``test`` database); each database is a new schema, dropped at the end.
"""

from __future__ import annotations

import cProfile
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from benchmarks import Result, absolute, compared, counting_statements, percentile, where_time_goes
from creditmeter import CreditMeter

POSTGRES_URL = os.environ.get(
    "CREDITMETER_BENCH_POSTGRES_URL",
    os.environ.get(
        "CREDITMETER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
)
MEASURED = "measured"
OTHERS = 1000
SHARE = 100  # one bulk transaction in SHARE is the measured account's
SPACING_S = 30  # the bulk history is one transaction every SPACING_S seconds, until now
ROUNDS = 6
P99_MS = 5.0
P50_GROWTH = 1.2

Builder = Callable[[CreditMeter, int], None]


def _history(meter: CreditMeter) -> None:
    """The measured account and its recent history, through the library."""
    now = datetime.now(UTC)
    meter.put_feature("generate", rates={"requests": 10})
    meter.put_feature("image", rates={"images": 100}, pool="images")
    meter.put_plan("pro", allowances={"*": 100_000, "images": 5_000})
    meter.create_account(MEASURED, name="Measured", plan="pro")
    meter.grant(MEASURED, 20_000, source="purchase", reference="pack-1")
    meter.grant(MEASURED, 5_000, source="promotional", expires_at=now + timedelta(days=30))
    meter.grant(MEASURED, 50, source="admin", reason="support")
    for i in range(30):
        hold = meter.authorize(MEASURED, "generate", credits=40)
        meter.settle(hold.id, credits=25 + i % 10)
        meter.charge(MEASURED, "image", usage={"images": 1})
    meter.refund(MEASURED, amount=10, reason="goodwill")
    meter.authorize(MEASURED, "generate", credits=15)  # one hold left pending


# The bulk history: the same statements on both engines, but for a few words.

BULK_TABLES = ("ledger_transactions", "postings", "usage_records")


def _stamp(at: datetime) -> str:
    """A UTC time as naive ISO text with microseconds (as the library stores it on SQLite)."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@dataclass(frozen=True)
class Dialect:
    sequence: str
    """A FROM item of the integers ``i`` from 1 to ``{count}``."""
    pad: str
    """``{expr}`` as text, zero-padded to ``{width}`` digits."""
    ago: str
    """The time ``{seconds}`` seconds before now."""
    time: str
    """The time ``{iso}`` (an ISO text in UTC)."""
    json: str
    """The JSON literal ``{literal}``."""
    true: str
    false: str

    def bulk(self, rows: int, now: datetime) -> list[str]:
        """The statements that write the other accounts and the bulk history."""
        period_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        period_end = (period_start + timedelta(days=32)).replace(day=1)
        created, start, end = (
            self.time.format(iso=_stamp(t))
            for t in (now - timedelta(days=400), period_start, period_end)
        )
        empty = self.json.format(literal="{}")
        txn_metadata = self.json.format(
            literal='{"feature": "generate", "model": null, "member": null}'
        )
        quantities = self.json.format(literal='{"requests": 1}')
        other = f"'other_' || {self.pad.format(expr=f'i % {OTHERS} + 1', width=6)}"
        accounts = (
            "INSERT INTO accounts (id, name, plan_key, pending_plan_key, status, created_at,"
            " period_start, period_end, balance, held, debt, overdraft_limit, due_at, metadata)"
            f" SELECT 'other_' || {self.pad.format(expr='i', width=6)}, 'Other ' || i,"
            f" NULL, NULL, 'active', {created}, {start}, {end}, 1000, 0, 0, 0, {end},"
            f" {empty} FROM {self.sequence.format(count=OTHERS)}"
        )
        series = (
            f" FROM (SELECT i, {self.pad.format(expr='i', width=25)} AS n,"
            f" CASE WHEN i % {SHARE} = 0 THEN '{MEASURED}' ELSE {other} END AS account,"
            f" {self.ago.format(seconds=f'({rows} - i) * {SPACING_S}')} AS at"
            f" FROM {self.sequence.format(count=rows)}) AS s"
        )
        transactions = (
            "INSERT INTO ledger_transactions (id, account_id, type, amount, balance_before,"
            " balance_after, description, usage_id, hold_id, metadata, created_at)"
            " SELECT 'txn_B' || n, account, 'usage', -7, 1007, 1000, 'generate: 7 credits',"
            " 'use_B' || n, NULL,"
            f" {txn_metadata}, at{series}"
        )
        postings = (
            "INSERT INTO postings (transaction_id, ledger_account, grant_id, amount)"
            " SELECT 'txn_B' || n,"
            " CASE WHEN leg = 1 THEN 'account:' || account ELSE 'consumption' END, NULL,"
            f" CASE WHEN leg = 1 THEN -7 ELSE 7 END{series}"
            " CROSS JOIN (SELECT 1 AS leg UNION ALL SELECT 2) AS legs"
        )
        usage = (
            "INSERT INTO usage_records (id, account_id, feature_key, feature_version, pool,"
            " model, member, quantities, provider_cost, credits, charged, debited, uncollected,"
            " refunded, unlimited, success, hold_id, transaction_id, metadata, created_at)"
            " SELECT 'use_B' || n, account, 'generate', 1, 'generate', NULL, NULL,"
            f" {quantities}, NULL, 7, 7, 0, 0, 0, {self.false}, {self.true}, NULL,"
            f" 'txn_B' || n, {empty}, at{series}"
        )
        return [accounts, transactions, postings, usage]


POSTGRESQL = Dialect(
    sequence="generate_series(1, {count}) AS g (i)",
    pad="lpad(({expr})::text, {width}, '0')",
    ago="now() - ({seconds}) * interval '1 second'",
    time="'{iso}+00'::timestamptz",
    json="'{literal}'::jsonb",
    true="true",
    false="false",
)
SQLITE = Dialect(
    sequence="(WITH RECURSIVE g (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g"
    " WHERE i < {count}) SELECT i FROM g) AS g",
    pad="printf('%0{width}d', {expr})",
    # The library's SQLite format: naive UTC text with microseconds.
    ago="strftime('%Y-%m-%d %H:%M:%S', 'now', printf('%d seconds', -({seconds}))) || '.000000'",
    time="'{iso}'",
    json="'{literal}'",
    true="1",
    false="0",
)


def _build_postgresql(meter: CreditMeter, rows: int) -> None:
    with meter.db.engine.begin() as conn:
        superuser = conn.exec_driver_sql(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).scalar()
        if superuser:  # no foreign-key triggers, for rows that satisfy the keys anyway
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        indexes = conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes AS i"
            " WHERE schemaname = current_schema() AND tablename = ANY(%(tables)s)"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)",
            {"tables": list(BULK_TABLES)},
        ).all()
        for name, _ in indexes:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        for statement in POSTGRESQL.bulk(rows, datetime.now(UTC)):
            conn.exec_driver_sql(statement.replace("%", "%%"))
        for _, definition in indexes:  # the same indexes, built once rather than row by row
            conn.exec_driver_sql(definition)
    # What autovacuum does soon after a bulk load: statistics and the visibility map.
    tables = ", ".join(("accounts", "grants", *BULK_TABLES))
    with meter.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM ANALYZE {tables}")


def _build_sqlite(meter: CreditMeter, rows: int) -> None:
    path = meter.db.engine.url.database
    assert path is not None
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("BEGIN IMMEDIATE")
        names = ", ".join(f"'{table}'" for table in BULK_TABLES)
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({names})"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        for statement in SQLITE.bulk(rows, datetime.now(UTC)):
            conn.execute(statement)
        for _, definition in indexes:  # the same indexes, built once rather than row by row
            conn.execute(definition)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


# Databases: a file in a temporary directory, or a schema dropped at the end.


@contextmanager
def _sqlite_urls(count: int) -> Iterator[list[str]]:
    with tempfile.TemporaryDirectory(prefix="creditmeter-bench-") as tmp:
        yield [f"sqlite:///{Path(tmp) / f'balance-{i}.db'}" for i in range(count)]


@contextmanager
def _postgresql_urls(count: int) -> Iterator[list[str]]:
    schemas = [f"bench_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        base = sa.make_url(POSTGRES_URL)
        yield [
            base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
                hide_password=False
            )
            for schema in schemas
        ]
    finally:
        with admin.connect() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


ENGINES: dict[str, tuple[str, Callable[[int], AbstractContextManager[list[str]]], Builder]] = {
    "sqlite": ("SQLite", _sqlite_urls, _build_sqlite),
    "postgresql": ("PostgreSQL", _postgresql_urls, _build_postgresql),
}


def _read_times_ms(meter: CreditMeter, reads: int) -> list[float]:
    times = []
    for _ in range(reads):
        start = time.perf_counter_ns()
        meter.balance(MEASURED)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def _engine(engine: str, sizes: tuple[int, int], reads: int) -> list[Result]:
    label, urls_of, build = ENGINES[engine]
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    with ExitStack() as stack:
        urls = stack.enter_context(urls_of(len(sizes)))
        meters: dict[int, CreditMeter] = {}
        for size, url in zip(sizes, urls, strict=True):
            began = time.perf_counter()
            meter = stack.enter_context(CreditMeter(url))
            _history(meter)
            build(meter, size)
            meters[size] = meter
            print(
                f"  balance {label}: {_count(meter):,} ledger rows built in"
                f" {time.perf_counter() - began:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        for meter in meters.values():
            _read_times_ms(meter, 100)  # warm-up: pool, statement caches, pages
        for round_ in range(ROUNDS):
            order = sizes if round_ % 2 == 0 else sizes[::-1]
            for size in order:
                samples[size] += _read_times_ms(meters[size], reads // ROUNDS)
    small, large = sizes
    results = [
        absolute(
            f"balance p99, {label}, {_rows(size)} rows",
            percentile(samples[size], 99),
            "ms",
            target=f"≤ {P99_MS:g} ms",
            meets=lambda ms: ms <= P99_MS,
        )
        for size in sizes
    ]
    results.append(
        compared(
            f"balance p50, {label}, {_rows(large)} vs {_rows(small)}",
            percentile(samples[large], 50),
            "ms",
            percentile(samples[small], 50),
            f"ms at {_rows(small)}",
            target=f"ratio ≤ {P50_GROWTH:g}",
            meets=lambda ratio: ratio <= P50_GROWTH,
        )
    )
    return results


def _count(meter: CreditMeter) -> int:
    with meter.db.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM ledger_transactions").scalar_one())


def _rows(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def run(quick: bool) -> list[Result]:
    sizes = (10_000, 200_000) if quick else (10_000, 1_000_000)
    reads = 600 if quick else 3000
    results: list[Result] = []
    for engine in ENGINES:
        results += _engine(engine, sizes, reads)
    return results


def profile(quick: bool) -> str:
    """Statements per balance read, and a cProfile of reads, on each engine (a small ledger)."""
    reads = 300 if quick else 1000
    lines: list[str] = []
    for label, urls_of, _ in ENGINES.values():
        with urls_of(1) as [url], CreditMeter(url) as meter:
            _history(meter)
            _read_times_ms(meter, 100)
            with counting_statements(meter.db.engine) as statements:
                meter.balance(MEASURED)
            profiler = cProfile.Profile()
            profiler.enable()
            _read_times_ms(meter, reads)
            profiler.disable()
        lines.append(f"{label}: SQL statements per balance read: {len(statements)}")
        lines += [f"    {s}" for s in statements]
        lines += where_time_goes(profiler, reads, "read", top=12)
        lines.append("")
    return "\n".join(lines)
