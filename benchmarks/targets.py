"""The speed targets, each figure beside a baseline measured in the same run.

Built from the other benchmarks' machinery (``benchmarks.http``'s load generator and
CPU accounting, ``benchmarks.pgbench``, ``benchmarks.embedded``, ``benchmarks.scaling``):

T1. The server's CPU (its process group, from /proc) per HTTP authorize + settle pair,
    ``serve --workers 2``, 32 clients on 32 accounts; beside the CPU per pair of the same
    requests answered by empty endpoints on the same HTTP stack (``benchmarks.floor``).
T2. 32 clients on ONE account against 32 clients on 32 accounts: pairs/s, the two on the
    same server in alternating rounds.
T3. 32 clients on one account, this checkout's code against another's (``--baseline-src``,
    the ``src`` directory of a checkout, say ``git worktree add /tmp/base <commit>``): each
    server on a schema of its own seeded by its own code, the two in alternating rounds
    (with T2's); not measured without it.
T4. T2's 32 clients on 32 accounts against ``pgbench`` TPC-B-like (8 clients).
T5. Their pair latency p99, beside the empty endpoints'.
T6. One client, sequential pairs over loopback: p50 and p99, beside the empty endpoints'.
T7. ``POST /v1/usage/batch`` of 1,000 events, 4 senders on their own accounts: events/s.
T8. Embedded pairs on SQLite against raw ``sqlite3`` at the same durability (FULL),
    in alternating rounds.
T9. A charge, an authorize, a settle and a balance read with 10 and with 10,000 live
    grants on the account, on each engine; a pair with 10 thousand and 1 million (10
    million in the full run) ledger transactions in the database.

The HTTP runs end with the books checked: 32 clients racing for an account's last
credits settle exactly the affordable pairs, no account overdrawn, ``verify`` empty (the
baseline's schema checked by the baseline's code).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from benchmarks import Result, absolute, compared, median, scaling
from benchmarks import embedded as emb
from benchmarks import pgbench as pgb
from benchmarks.balance import ENGINES
from benchmarks.http import (
    BATCH,
    BATCH_ACCOUNTS,
    CLIENTS,
    EXHAUST_ATTEMPTS,
    EXHAUST_CREDITS,
    SENDERS,
    Load,
    books,
    cpu_meter,
    exhaust,
    merged,
    run_batches,
    run_pairs,
    say,
)
from benchmarks.server import (
    Seeded,
    Server,
    floor_serving,
    fresh_schema,
    schema_url,
    seed,
    seed_with,
    serving,
    verify_with,
)
from creditmeter import CreditMeter

HOT = "acct-hot"
EXHAUSTED = "acct-exhaust"
SPREAD = [f"acct-{i:02d}" for i in range(CLIENTS)]
BATCHED = [f"batch-{i:03d}" for i in range(BATCH_ACCOUNTS * SENDERS)]
CPU_MS = 2.0
SEQUENTIAL_P50_MS = 3.0
SEQUENTIAL_P99_MS = 6.0
P99_MS = 50.0
EVENTS = 20_000.0


@dataclass(frozen=True)
class Plan:
    warmup: float
    round: float
    """The measuring time of one round of T2 and T3."""
    rounds: int
    single: float
    floor: float
    batches: float
    pgbench: int
    embedded_rounds: int
    operations: int
    ledger: tuple[int, int]


def plan(quick: bool) -> Plan:
    if quick:
        return Plan(1.0, 2.0, 2, 3.0, 2.0, 3.0, 3, 3, 60, (10_000, 1_000_000))
    return Plan(2.0, 5.0, 3, 8.0, 5.0, 10.0, 10, 5, 300, (10_000, 10_000_000))


def cpu_ms(load: Load) -> float:
    """The server's CPU per operation, in ms."""
    return load.cores("server") * 1000 / load.rate if load.done else math.nan


def ratios(figures: list[Load], baselines: list[Load]) -> float:
    """The median of the rounds' ratios of pairs/s."""
    pairs = zip(figures, baselines, strict=True)
    return median([f.rate / b.rate if b.rate else math.inf for f, b in pairs])


def commit_of(src: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or str(src)


@dataclass
class Service:
    """What the HTTP runs measured."""

    spread: list[Load]
    hot: list[Load]
    baseline_hot: list[Load]
    single: Load
    floor: Load
    floor_single: Load
    batches: Load
    problems: list[str]


@contextlib.contextmanager
def _baseline(src: Path | None, problems: list[str]) -> Iterator[tuple[Server, Seeded, str] | None]:
    """A server running the code in ``src`` on a schema seeded by it, if ``src``; what is
    wrong with its books at the end (checked by that code) added to ``problems``."""
    if src is None:
        yield None
        return
    with fresh_schema() as schema:
        url = schema_url(schema)
        seeded = seed_with(src, url, [HOT])
        with serving(url, workers=2, src=src) as server:
            yield server, seeded, schema
        found = [f"baseline verify: {v}" for v in verify_with(src, url)]
        engine = sa.create_engine(url)
        try:
            overdrawn = scaling.overdrawn_accounts(engine)
        finally:
            engine.dispose()
        if overdrawn:
            found.append(f"baseline: {overdrawn} accounts overdrawn")
        for problem in found:
            say(f"PROBLEM {problem}")
        problems += found


def _service(p: Plan, src: Path | None) -> Service:
    """T1–T7: one server of this code (and one of the baseline's, if ``src``), then the
    empty endpoints."""
    spread: list[Load] = []
    hot: list[Load] = []
    baseline_hot: list[Load] = []
    problems: list[str] = []
    with fresh_schema() as schema:
        url = schema_url(schema)
        seeded = seed(url, [*SPREAD, HOT, *BATCHED])
        with CreditMeter(url, migrate=False) as meter:
            meter.create_account(EXHAUSTED)
            meter.grant(EXHAUSTED, EXHAUST_CREDITS, source="purchase")
        on_spread = Seeded(SPREAD, seeded.service_key)
        on_hot = Seeded([HOT], seeded.service_key)
        with _baseline(src, problems) as base, serving(url, workers=2) as server:
            for round_ in range(p.rounds):
                runs = ["spread", "hot", "baseline"] if base is not None else ["spread", "hot"]
                for what in runs if round_ % 2 == 0 else runs[::-1]:
                    if what == "spread":
                        spread.append(
                            run_pairs(
                                f"32 clients on 32 accounts, round {round_ + 1}",
                                [server],
                                on_spread,
                                CLIENTS,
                                p.warmup,
                                p.round,
                                schema,
                            )
                        )
                    elif what == "hot":
                        hot.append(
                            run_pairs(
                                f"32 clients on one account, round {round_ + 1}",
                                [server],
                                on_hot,
                                CLIENTS,
                                p.warmup,
                                p.round,
                                schema,
                            )
                        )
                    elif base is not None:
                        base_server, base_seeded, base_schema = base
                        baseline_hot.append(
                            run_pairs(
                                f"baseline code, 32 clients on one account, round {round_ + 1}",
                                [base_server],
                                base_seeded,
                                CLIENTS,
                                p.warmup,
                                p.round,
                                base_schema,
                            )
                        )
            single = run_pairs(
                "one client, sequential pairs", [server], on_spread, 1, p.warmup, p.single, schema
            )
            batches = run_batches(
                f"usage/batch x{BATCH}, {SENDERS} senders on their own {BATCH_ACCOUNTS} accounts",
                server,
                Seeded(BATCHED, seeded.service_key),
                SENDERS,
                BATCH,
                p.batches,
                cpu_meter([server.process.pid], schema),
                schema,
                shared=False,
            )
            race = exhaust(
                (server.host, server.port),
                seeded.service_key,
                EXHAUSTED,
                CLIENTS,
                EXHAUST_ATTEMPTS,
            )
        problems += books(url, [*SPREAD, HOT, *BATCHED], race, EXHAUSTED)
        with floor_serving(workers=2) as floor:
            empty = run_pairs(
                "empty endpoints, 32 clients",
                [floor],
                on_spread,
                CLIENTS,
                p.warmup,
                p.floor,
                schema,
            )
            empty_single = run_pairs(
                "empty endpoints, one client", [floor], on_spread, 1, p.warmup, p.floor, schema
            )
    return Service(spread, hot, baseline_hot, single, empty, empty_single, batches, problems)


def _http_results(s: Service, tpcb_tps: float, src: Path | None) -> list[Result]:
    spread = merged("32 clients on 32 accounts", s.spread)
    hot = merged("32 clients on one account", s.hot)
    say(spread.describe() + f"\n        ({len(s.spread)} rounds)")
    say(hot.describe() + f"\n        ({len(s.hot)} rounds)")
    clean = not s.problems
    results = [
        Result(
            "T1 server CPU per HTTP pair, 32 clients",
            cpu_ms(spread),
            "ms",
            cpu_ms(s.floor),
            "ms, empty endpoints",
            cpu_ms(spread) / cpu_ms(s.floor),
            f"≤ {CPU_MS:g} ms",
            cpu_ms(spread) <= CPU_MS and not spread.errors,
        ),
        compared(
            "T2 one hot account vs 32 accounts, 32 clients",
            hot.rate,
            "pairs/s",
            spread.rate,
            "pairs/s on 32 accounts",
            target="ratio ≥ 1.0",
            meets=lambda r: r >= 1.0 and not hot.errors,
            ratio=ratios(s.hot, s.spread),
        ),
    ]
    if src is None:
        results.append(
            Result(
                "T3 one hot account, this code vs baseline",
                math.nan,
                "",
                target="ratio ≥ 3 (needs --baseline-src)",
            )
        )
    else:
        base = merged("baseline code, 32 clients on one account", s.baseline_hot)
        say(base.describe() + f"\n        ({len(s.baseline_hot)} rounds)")
        results.append(
            compared(
                f"T3 one hot account, this code vs {commit_of(src)}",
                hot.rate,
                "pairs/s",
                base.rate,
                "pairs/s baseline code",
                target="ratio ≥ 3",
                meets=lambda r: r >= 3 and not hot.errors and not base.errors,
                ratio=ratios(s.hot, s.baseline_hot),
            )
        )
    results += [
        compared(
            "T4 HTTP pairs, 32 clients vs pgbench",
            spread.rate,
            "pairs/s",
            tpcb_tps,
            "tps TPC-B-like -c 8",
            target="ratio ≥ 0.3",
            meets=lambda r: r >= 0.3 and not spread.errors,
        ),
        Result(
            "T5 HTTP pair latency p99, 32 clients",
            spread.ms(99),
            "ms",
            s.floor.ms(99),
            "ms, empty endpoints",
            spread.ms(99) / s.floor.ms(99),
            f"≤ {P99_MS:g} ms",
            spread.ms(99) <= P99_MS,
        ),
    ]
    for p, bound in ((50, SEQUENTIAL_P50_MS), (99, SEQUENTIAL_P99_MS)):
        results.append(
            Result(
                f"T6 one client, sequential pair p{p}",
                s.single.ms(p),
                "ms",
                s.floor_single.ms(p),
                "ms, empty endpoints",
                s.single.ms(p) / s.floor_single.ms(p),
                f"≤ {bound:g} ms",
                s.single.ms(p) <= bound and not s.single.errors,
            )
        )
    results += [
        Result(
            f"T7 usage/batch, {SENDERS} senders",
            s.batches.rate,
            "events/s",
            tpcb_tps,
            "tps TPC-B-like -c 8",
            s.batches.rate / tpcb_tps if tpcb_tps else None,
            f"≥ {EVENTS:,.0f} events/s",
            s.batches.rate >= EVENTS and not s.batches.errors,
        ),
        absolute(
            "T1–T7 overdrafts, verify violations, race errors",
            len(s.problems),
            "found",
            target="0",
            meets=lambda n: n == 0 and clean,
        ),
    ]
    return results


def _embedded(p: Plan, quick: bool) -> list[Result]:
    labels, rates = emb.alternated([emb.Library, emb.RawSqlite], quick, p.embedded_rounds)
    library, raw = labels
    return [
        compared(
            "T8 embedded pair vs sqlite3, SQLite FULL",
            median(rates[library]),
            "pairs/s",
            median(rates[raw]),
            "pairs/s sqlite3 FULL",
            target="ratio ≥ 0.5",
            meets=lambda r: r >= 0.5,
            ratio=emb.ratio_of_rounds(rates, library, raw),
        )
    ]


def _growth(p: Plan) -> list[Result]:
    results: list[Result] = []
    for engine in ENGINES:
        results += scaling.grants_growth(engine, (10, 10_000), p.operations)
    for engine in ENGINES:
        results += scaling.ledger_growth(engine, p.ledger, p.operations, shown=(scaling.PAIR,))
    return [
        Result(
            f"T9 {r.name}", r.figure, r.unit, r.baseline, r.baseline_unit, r.ratio, r.target, r.met
        )
        for r in results
    ]


def run(quick: bool, baseline_src: Path | None = None) -> list[Result]:
    p = plan(quick)
    began = time.monotonic()
    tpcb = pgb.tpcb(clients=8, jobs=2, seconds=p.pgbench)
    say(f"baseline {tpcb.text()}")
    results = _http_results(_service(p, baseline_src), tpcb.tps, baseline_src)
    say(f"T1–T7 took {time.monotonic() - began:.0f} s")
    results += _embedded(p, quick)
    results += _growth(p)
    return results
