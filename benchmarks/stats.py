"""The stats reads of the admin console and the usage charts over 1 million usage records.

For each engine one database is built: 1,000 accounts, five features and 1 million usage
records (200 thousand with ``--quick``) spread evenly over the 90 days before now, one in
ten of them the ``heavy`` account's, the rest spread over the others, each of which uses
one feature and one model (members and provider costs vary row by row). The records are
written with bulk SQL (``INSERT … SELECT`` from ``generate_series`` on PostgreSQL, from a
recursive CTE on SQLite), their indexes dropped during the load and built again after it;
on PostgreSQL then ``VACUUM ANALYZE``, as autovacuum would after a load (on SQLite the
library runs no ``ANALYZE``, and neither does this).

Each read is timed in turn, round after round, through the library:

- the overview: ``stats`` (with its breakdowns by model and feature, what the admin
  console's overview page asks) of the last 30 days, and of all 90 days; ``model_stats``
  and ``feature_stats`` alone;
- an account's usage chart: ``daily_usage`` of the heavy account (100 thousand records,
  a third of them in the range) and of an ordinary one, 30 days by feature; every
  account's chart (the admin overview's);
- ``search_accounts`` (the first page by id, and by available credits among the low
  accounts) and ``forecast`` of the heavy account.

Targets: the overview and the heavy account's chart answer within 200 ms at p95. The
overview's baseline is its usage sums made from the records alone (what it would read
without the daily sums), timed in the same rounds. The records are loaded into a schema at
revision 0013 and migration 0016 sums them, as it would an existing database's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from benchmarks import Result, absolute, compared, percentile
from benchmarks.balance import _postgresql_urls, _sqlite_urls
from creditmeter import CreditMeter
from creditmeter.store import stats as stats_store
from creditmeter.store.migrate import upgrade

ACCOUNTS = 1000
HEAVY = "heavy"
HEAVY_SHARE = 10  # one record in HEAVY_SHARE is the heavy account's
DAYS = 90
FEATURES = ("chat", "summarize", "image", "embed", "search")
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "claude-haiku")
P95_MS = 200.0
BEFORE = "0013"
"""The revision before the daily sums: the records are loaded there, then migrated."""
TARGETED = ("overview, 30 days", "heavy account's chart, 30 days")


def _prepare(meter: CreditMeter) -> None:
    for feature in FEATURES:
        meter.put_feature(feature, rates={"tokens": 1})
    meter.put_plan("pro", allowances={"*": 100_000})
    meter.create_account(HEAVY, name="Heavy Industries", plan="pro")


def _usage_sql(engine: str, rows: int) -> list[str]:
    """The accounts and the usage records, as SQL for ``engine``."""
    span = DAYS * 86_400
    if engine == "postgresql":
        series = "generate_series(1, {n}) AS g (i)"
        pad = "lpad(({expr})::text, {width}, '0')"
        at = f"now() - (({rows} - i) * {span}.0 / {rows}) * interval '1 second'"
        cost = "((i % 100) * 0.00001)::numeric"
        empty, false, true, now = "'{}'::jsonb", "false", "true", "now()"
        end = "now() + interval '30 days'"
    else:
        series = (
            "(WITH RECURSIVE g (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g"
            " WHERE i < {n}) SELECT i FROM g) AS g"
        )
        pad = "printf('%0{width}d', {expr})"
        at = (
            "strftime('%Y-%m-%d %H:%M:%f', 'now',"
            f" printf('%.3f seconds', -(({rows} - i) * {span}.0 / {rows}))) || '000'"
        )
        cost = "printf('%.10f', (i % 100) * 0.00001)"
        empty, false, true = "'{}'", "0", "1"
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
        end = "strftime('%Y-%m-%d %H:%M:%f', 'now', '+30 days') || '000'"
    account_id = "'acct_' || " + pad.format(expr="i", width=6)
    accounts = (
        "INSERT INTO accounts (id, name, plan_key, pending_plan_key, status, created_at,"
        " period_start, period_end, balance, held, debt, overdraft_limit, due_at, metadata)"
        f" SELECT {account_id}, 'Account ' || i, CASE WHEN i % 3 = 0 THEN 'pro' END, NULL,"
        f" CASE WHEN i % 50 = 0 THEN 'suspended' ELSE 'active' END, {now}, {now}, {end},"
        f" (i * 37) % 5000, 0, 0, 0, {end}, {empty} FROM {series.format(n=ACCOUNTS)}"
    )
    other = "'acct_' || " + pad.format(expr=f"i % {ACCOUNTS} + 1", width=6)
    features = " ".join(f"WHEN {k} THEN '{f}'" for k, f in enumerate(FEATURES))
    models = " ".join(f"WHEN {k} THEN '{m}'" for k, m in enumerate(MODELS))
    usage = (
        "INSERT INTO usage_records (id, account_id, feature_key, feature_version, pool,"
        " model, member, quantities, provider_cost, credits, charged, debited, uncollected,"
        " refunded, unlimited, success, hold_id, transaction_id, metadata, created_at)"
        f" SELECT 'use_B' || {pad.format(expr='i', width=10)},"
        f" CASE WHEN i % {HEAVY_SHARE} = 0 THEN '{HEAVY}' ELSE {other} END,"
        f" CASE i % {len(FEATURES)} {features} END, 1, '*',"
        f" CASE i % {len(MODELS) + 1} {models} END, 'member_' || (i % 20), {empty},"
        f" CASE WHEN i % 7 = 0 THEN NULL ELSE {cost} END,"
        f" 1 + i % 50, 1 + i % 50, 0, 0, 0, {false}, {true}, NULL, NULL, {empty}, {at}"
        f" FROM {series.format(n=rows)}"
    )
    return [accounts, usage]


def _build(meter: CreditMeter, engine: str, rows: int) -> float:
    """Load the records into a schema at revision ``BEFORE`` (no daily sums yet), then
    migrate to the head, which sums them; returns the seconds the migration took."""
    statements = _usage_sql(engine, rows)
    with meter.db.engine.begin() as conn:
        if engine == "postgresql":
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
            indexes = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes AS i"
                " WHERE schemaname = current_schema() AND tablename = 'usage_records'"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)"
            ).all()
        else:
            indexes = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                " AND tbl_name = 'usage_records'"
            ).all()
        for name, _ in indexes:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        for statement in statements:
            conn.exec_driver_sql(
                statement.replace("%", "%%") if engine == "postgresql" else statement
            )
        for _, definition in indexes:  # built once rather than row by row
            conn.exec_driver_sql(definition)
    began = time.perf_counter()
    upgrade(meter.db)
    migrated = time.perf_counter() - began
    if engine == "postgresql":  # what autovacuum does soon after a load
        with meter.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE accounts, usage_records, usage_daily")
    return migrated


def _reads(meter: CreditMeter) -> dict[str, Callable[[], object]]:
    now = datetime.now(UTC)
    month, quarter = now - timedelta(days=30), now - timedelta(days=DAYS + 1)

    return {
        "overview, 30 days": lambda: meter.stats(since=month, until=now),
        "overview, 90 days": lambda: meter.stats(since=quarter, until=now),
        "models, 30 days": lambda: meter.model_stats(since=month, until=now),
        "features, 30 days": lambda: meter.feature_stats(since=month, until=now),
        "heavy account's chart, 30 days": lambda: meter.daily_usage(HEAVY, since=month, until=now),
        "an account's chart, 30 days": lambda: meter.daily_usage(
            "acct_000042", since=month, until=now
        ),
        "every account's chart, 30 days": lambda: meter.daily_usage(None, since=month, until=now),
        "search, first page": meter.search_accounts,
        "search, low by available": lambda: meter.search_accounts(
            level="low", sort="available", descending=True
        ),
        "forecast, heavy account": lambda: meter.forecast(HEAVY),
    }


def _times_ms(read: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter_ns()
        read()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def _records_alone(meter: CreditMeter, since: datetime, until: datetime) -> Callable[[], object]:
    """The overview's usage sums made from the records alone, as without the daily sums."""

    def read() -> object:
        with meter.db.read() as conn:
            return stats_store.groups_of_records(conn, meter.db.dialect, since, until)

    return read


def _engine(engine: str, label: str, rows: int, rounds: int) -> list[Result]:
    urls_of = _postgresql_urls if engine == "postgresql" else _sqlite_urls
    with urls_of(1) as [url], CreditMeter(url, migrate=False) as meter:
        began = time.perf_counter()
        upgrade(meter.db, BEFORE)
        _prepare(meter)
        migrated = _build(meter, engine, rows)
        print(
            f"  stats {label}: {rows:,} usage records built in"
            f" {time.perf_counter() - began:.1f} s, summed by migration 0016 in {migrated:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        reads = _reads(meter)
        now = datetime.now(UTC)
        baseline = _records_alone(meter, now - timedelta(days=30), now)
        for read in [*reads.values(), baseline]:
            read()  # warm-up: pool, statement caches, pages
        samples: dict[str, list[float]] = {name: [] for name in reads}
        without: list[float] = []
        for _ in range(rounds):
            for name, read in reads.items():
                samples[name] += _times_ms(read, 1)
            without += _times_ms(baseline, 1)
    size = f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1000}k"
    results: list[Result] = []
    for name, times in samples.items():
        figure = f"{name} p95, {label}, {size} usage"
        unit = f"ms (p50 {percentile(times, 50):.1f})"
        if name in TARGETED:
            results.append(
                absolute(
                    figure,
                    percentile(times, 95),
                    unit,
                    target=f"≤ {P95_MS:g} ms",
                    meets=lambda ms: ms <= P95_MS,
                )
            )
        else:
            results.append(Result(figure, percentile(times, 95), unit, target="(information)"))
    results.append(
        compared(
            f"overview, 30 days p50, {label}, daily sums vs records alone",
            percentile(samples["overview, 30 days"], 50),
            "ms",
            percentile(without, 50),
            "ms, the records' sums alone",
            target="(information)",
            meets=None,
        )
    )
    return results


def run(quick: bool) -> list[Result]:
    rows = 200_000 if quick else 1_000_000
    rounds = 5 if quick else 20
    results: list[Result] = []
    for engine, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        results += _engine(engine, label, rows, rounds)
    return results


if __name__ == "__main__":
    from benchmarks import table

    print(table(run("--quick" in sys.argv)))
