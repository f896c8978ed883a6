"""How the cost of a write grows with the work: live grants on the account, rows in the
ledger.

Part 1, live grants. For each engine three databases are built, each with one measured
account: with 10 live grants, with 10,000, and with 8, as many as a use case loads with
the account's lock (``LOAD_CAP``; 10,000 against 8 is given for information). The
grants are written with bulk SQL, issued by one balanced ledger transaction, so that
``verify`` stays clean; each holds plenty of credits (the operations never run out),
half of them expire in a year and half never do, so the consumption order has all its
keys to sort by. A charge, an authorize, a settle (of that authorize) and a balance read
are timed one after another, the databases alternating in rounds so that drift of the
shared machine hits them alike; the figure is the median of each operation with 10,000
grants against its median with 10 in the same run.

Part 2, ledger rows. The small and the large ledger of ``benchmarks.balance`` (10
thousand and 1 million ledger transactions, 200 thousand with ``--quick``), and the same
four operations on its measured account, compared the same way.

Target: each ratio ≤ 1.5. Each database ends with the zero-overdraft check, and those of
part 1 with ``verify`` (the bulk history of part 2 is not made to balance).
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from benchmarks import Result, compared, median
from benchmarks.balance import ENGINES, MEASURED, _count, _history, _rows
from creditmeter import CreditMeter
from creditmeter.core.types import DEFAULT_PRIORITY, GrantSource, SystemAccount, wallet
from creditmeter.store.tables import grant_free, grants, ledger_transactions, postings

GROWTH = 1.5
GRANT_CREDITS = 1_000_000
OPERATIONS = ("charge", "authorize", "settle", "balance")
PAIR = "pair"
"""An authorize and its settle, timed together."""
ROUNDS = 6


def _with_grants(meter: CreditMeter, count: int) -> None:
    """The measured account with ``count`` live grants given by hand, issued by one balanced
    ledger transaction written with bulk SQL, and their running total of free credits."""
    now = datetime.now(UTC)
    meter.put_feature("generate", rates={"requests": 1})
    meter.create_account(MEASURED, name="Measured")
    start = now - timedelta(days=30)
    rows = [
        {
            "id": f"grt_bulk{i:08d}",
            "account_id": MEASURED,
            "source": GrantSource.ADMIN.value,
            "pool": "*",
            "priority": DEFAULT_PRIORITY[GrantSource.ADMIN],
            "amount": GRANT_CREDITS,
            "remaining": GRANT_CREDITS,
            "held": 0,
            "effective_at": start,
            "expires_at": now + timedelta(days=365, seconds=i) if i % 2 else None,
            "created_at": start + timedelta(seconds=i),
            "period_start": None,
            "reference": f"pack-{i}",
            "voided_at": None,
        }
        for i in range(count)
    ]
    total = GRANT_CREDITS * count
    legs = [
        {
            "transaction_id": "txn_bulkgrants",
            "ledger_account": SystemAccount.ISSUANCE_ADMIN.value,
            "grant_id": None,
            "amount": -total,
        }
    ] + [
        {
            "transaction_id": "txn_bulkgrants",
            "ledger_account": wallet(MEASURED),
            "grant_id": r["id"],
            "amount": GRANT_CREDITS,
        }
        for r in rows
    ]
    with meter.db.engine.begin() as conn:
        conn.execute(grants.insert(), rows)
        conn.execute(
            grant_free.insert().values(
                account_id=MEASURED, pool="*", source=GrantSource.ADMIN.value, free=total
            )
        )
        conn.execute(
            ledger_transactions.insert().values(
                id="txn_bulkgrants",
                account_id=MEASURED,
                type="grant",
                amount=total,
                balance_before=0,
                balance_after=total,
                description="bulk grants",
                metadata={},
                created_at=start,
            )
        )
        conn.execute(postings.insert(), legs)
        conn.exec_driver_sql(
            f"UPDATE accounts SET balance = balance + {total} WHERE id = '{MEASURED}'"
        )
    with meter.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


def _round(meter: CreditMeter, times: dict[str, list[float]], count: int) -> None:
    """``count`` of each operation on the measured account, each timed."""
    for _ in range(count):
        start = time.perf_counter_ns()
        meter.charge(MEASURED, "generate", usage={"requests": 3})
        charged = time.perf_counter_ns()
        hold = meter.authorize(MEASURED, "generate", credits=5)
        authorized = time.perf_counter_ns()
        meter.settle(hold.id, credits=4)
        settled = time.perf_counter_ns()
        meter.balance(MEASURED)
        read = time.perf_counter_ns()
        marks = (start, charged, authorized, settled, read)
        for name, began, ended in zip(OPERATIONS, marks, marks[1:], strict=False):
            times[name].append((ended - began) / 1e6)
        times[PAIR].append((settled - charged) / 1e6)


def overdrawn_accounts(engine: sa.Engine) -> int:
    """How many accounts are below their overdraft limit (or in debt beyond it)."""
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM accounts"
                " WHERE debt > overdraft_limit OR balance - held < -debt"
            ).scalar_one()
        )


def _checked(meter: CreditMeter, label: str, verified: bool) -> None:
    """No account below its overdraft limit and, if ``verified``, ``verify`` clean."""
    violations = meter.verify() if verified else []
    if violations:
        raise AssertionError(f"{label}: verify found {violations[:3]}")
    overdrawn = overdrawn_accounts(meter.db.engine)
    if overdrawn:
        raise AssertionError(f"{label}: {overdrawn} accounts overdrawn")


def _compare(
    label: str,
    what: str,
    meters: dict[int, CreditMeter],
    names: dict[int, str],
    operations: int,
    verified: bool,
    shown: tuple[str, ...] = OPERATIONS,
) -> list[Result]:
    """The operations ``shown`` (of OPERATIONS and PAIR), timed on each meter in
    alternating rounds, the largest size against the next."""
    times: dict[int, dict[str, list[float]]] = {
        size: {op: [] for op in (*OPERATIONS, PAIR)} for size in meters
    }
    for meter in meters.values():
        _round(meter, {op: [] for op in (*OPERATIONS, PAIR)}, 5)  # warm-up
    for round_ in range(ROUNDS):
        order = list(meters) if round_ % 2 == 0 else list(meters)[::-1]
        for size in order:
            _round(meters[size], times[size], operations // ROUNDS)
    for size, meter in meters.items():
        _checked(meter, f"{label}, {names[size]}", verified)
    small, large = sorted(meters)[-2:]
    results: list[Result] = []
    for op in shown:
        print(
            f"  scaling {label}, {op}: p50 "
            + ", ".join(f"{median(times[n][op]):.2f} ms at {names[n]}" for n in sorted(meters))
            + f" {what}",
            file=sys.stderr,
            flush=True,
        )
        results.append(
            compared(
                f"{op} p50, {label}, {names[large]} vs {names[small]} {what}",
                median(times[large][op]),
                "ms",
                median(times[small][op]),
                f"ms at {names[small]}",
                target=f"ratio ≤ {GROWTH:g}",
                meets=lambda ratio: ratio <= GROWTH,
            )
        )
        if len(meters) > 2:  # against the fewest: an account whose grants all fit in memory
            fewest = min(meters)
            results.append(
                compared(
                    f"{op} p50, {label}, {names[large]} vs {names[fewest]} {what}",
                    median(times[large][op]),
                    "ms",
                    median(times[fewest][op]),
                    f"ms at {names[fewest]}",
                    target="(information)",
                    meets=None,
                )
            )
    return results


def grants_growth(engine: str, sizes: tuple[int, ...], operations: int) -> list[Result]:
    """The four operations with ``sizes`` live grants on the account, on ``engine``."""
    label, urls_of, _ = ENGINES[engine]
    with ExitStack() as stack:
        urls = stack.enter_context(urls_of(len(sizes)))
        meters = {}
        for size, url in zip(sizes, urls, strict=True):
            meter = stack.enter_context(CreditMeter(url))
            _with_grants(meter, size)
            meters[size] = meter
        names = {size: f"{size:,}" for size in sizes}
        return _compare(label, "grants", meters, names, operations, verified=True)


def ledger_growth(
    engine: str, sizes: tuple[int, int], operations: int, shown: tuple[str, ...] = OPERATIONS
) -> list[Result]:
    """The operations ``shown`` with ``sizes`` ledger transactions in the database."""
    label, urls_of, build = ENGINES[engine]
    with ExitStack() as stack:
        urls = stack.enter_context(urls_of(len(sizes)))
        meters = {}
        for size, url in zip(sizes, urls, strict=True):
            began = time.perf_counter()
            meter = stack.enter_context(CreditMeter(url))
            _history(meter)
            build(meter, size)
            meters[size] = meter
            print(
                f"  scaling {label}: {_count(meter):,} ledger rows built in"
                f" {time.perf_counter() - began:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        names = {size: _rows(size) for size in sizes}
        # (The bulk history of ``benchmarks.balance`` need not balance: no ``verify``.)
        return _compare(
            label, "ledger rows", meters, names, operations, verified=False, shown=shown
        )


def run(quick: bool) -> list[Result]:
    # 8: all in memory (``LOAD_CAP``); 10 and 10,000: read through the indexes.
    grant_sizes = (8, 10, 10_000)
    ledger_sizes = (10_000, 200_000) if quick else (10_000, 1_000_000)
    operations = 60 if quick else 300
    results: list[Result] = []
    for engine in ENGINES:
        results += grants_growth(engine, grant_sizes, operations)
    for engine in ENGINES:
        results += ledger_growth(engine, ledger_sizes, operations)
    return results
