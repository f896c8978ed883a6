"""Group commit in the library: threads of one meter on one hot account, grouped against
not grouped (``CreditMeter(group_commit=False)``), in alternating rounds of one process.

Each of ``THREADS`` threads runs authorize + settle pairs on the same account, as the
request threads of one server worker would; a second figure spreads them over an account
each. The CPU is this process's (the library and the driver), per pair. Each round ends
with the books checked: the account's balance is exactly what the pairs settled, and
``verify`` finds nothing.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass

from benchmarks import Result, compared, median
from benchmarks.balance import ENGINES
from creditmeter import CreditMeter

THREADS = 16
CREDITS = 10**9
ESTIMATE, ACTUAL = 5, 3


@dataclass(frozen=True)
class Round:
    pairs_per_second: float
    cpu_ms_per_pair: float


def run_round(url: str, *, grouped: bool, hot: bool, pairs: int) -> Round:
    """``THREADS`` threads of ``pairs`` pairs each, on one account (``hot``) or one each."""
    with CreditMeter(url, pool_size=THREADS + 2, group_commit=grouped) as meter:
        meter.put_feature("chat", rates={"tokens": 1})
        prefix = f"g{uuid.uuid4().hex[:8]}"
        accounts = [prefix] if hot else [f"{prefix}-{i}" for i in range(THREADS)]
        for account in accounts:
            meter.create_account(account)
            meter.grant(account, CREDITS)
        start = threading.Barrier(THREADS + 1)

        def work(index: int) -> None:
            account = accounts[index % len(accounts)]
            start.wait()
            for _ in range(pairs):
                hold = meter.authorize(account, "chat", credits=ESTIMATE)
                meter.settle(hold.id, credits=ACTUAL)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        cpu = os.times()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        used = os.times()
        done = THREADS * pairs
        settled = ACTUAL * pairs * THREADS // len(accounts)
        for account in accounts:
            balance = meter.balance(account).available
            assert balance == CREDITS - settled, f"{account}: {balance}"
        assert meter.verify() == []
    seconds = (used.user - cpu.user) + (used.system - cpu.system)
    return Round(done / elapsed, seconds / done * 1000)


def _engine(engine: str, quick: bool) -> list[Result]:
    label, urls_of, _ = ENGINES[engine]
    pairs = 20 if quick else 60
    rounds = 2 if quick else 3
    results: list[Result] = []
    with urls_of(1) as [url]:
        CreditMeter(url).close()  # the schema, made once
        for hot in (True, False):
            grouped: list[Round] = []
            alone: list[Round] = []
            for _ in range(rounds):
                alone.append(run_round(url, grouped=False, hot=hot, pairs=pairs))
                grouped.append(run_round(url, grouped=True, hot=hot, pairs=pairs))
            where = "one hot account" if hot else f"{THREADS} accounts"
            results.append(
                compared(
                    f"G {label}, {THREADS} threads on {where}: grouped",
                    median([r.pairs_per_second for r in grouped]),
                    "pairs/s",
                    median([r.pairs_per_second for r in alone]),
                    "pairs/s not grouped",
                    target="(information)",
                    meets=None,
                    ratio=median(
                        [
                            g.pairs_per_second / a.pairs_per_second
                            for g, a in zip(grouped, alone, strict=True)
                        ]
                    ),
                )
            )
            results.append(
                compared(
                    f"G {label}, {where}: the library's CPU a pair, grouped",
                    median([r.cpu_ms_per_pair for r in grouped]),
                    "ms",
                    median([r.cpu_ms_per_pair for r in alone]),
                    "ms not grouped",
                    target="(information)",
                    meets=None,
                )
            )
    return results


def run(quick: bool) -> list[Result]:
    results: list[Result] = []
    for engine in ENGINES:
        results += _engine(engine, quick)
    return results
