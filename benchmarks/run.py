"""Run every benchmark and print figures and baselines side by side.

    python -m benchmarks.run [--quick] [--only NAME] [--profile] [--baseline-src PATH]

A benchmark is a module with ``def run(quick: bool) -> list[Result]`` and, optionally,
``def profile(quick: bool) -> str`` (printed with ``--profile``); add it to ``MODULES``.
A ``run`` that also takes ``baseline_src`` is given ``--baseline-src``: the ``src``
directory of another checkout, whose code it measures beside this one's.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import cast

from benchmarks import Result, table

MODULES: dict[str, str] = {
    "embedded": "benchmarks.embedded",
    "balance": "benchmarks.balance",
    "stats": "benchmarks.stats",
    "http": "benchmarks.http",
    "remote": "benchmarks.remote",
    "instructions": "benchmarks.instructions",
    "delivery": "benchmarks.delivery",
    "scaling": "benchmarks.scaling",
    "grouping": "benchmarks.grouping",
    "targets": "benchmarks.targets",
}
ON_REQUEST = frozenset({"instructions", "targets"})
"""Run only when named with ``--only``: they need a tool the others do not (valgrind), or
measure again what the others measure (the speed targets, in one table)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rows and repetitions")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(MODULES),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(MODULES)}; "
        f"{', '.join(sorted(ON_REQUEST))} only when named",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print the profiles benchmarks offer"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        metavar="PATH",
        help="the src directory of another checkout, for the benchmarks that compare code "
        "(targets)",
    )
    args = parser.parse_args(argv)
    if args.baseline_src is not None and not (args.baseline_src / "creditmeter").is_dir():
        parser.error(f"--baseline-src {args.baseline_src}: no creditmeter package in it")
    names = args.only or [name for name in MODULES if name not in ON_REQUEST]
    results: list[Result] = []
    profiles: list[tuple[str, str]] = []
    failed: list[str] = []
    started = time.perf_counter()
    print(f"load average at start: {_load()}", file=sys.stderr, flush=True)
    for name in names:
        module = importlib.import_module(MODULES[name])
        print(f"running {name}…", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            run = cast(Callable[..., list[Result]], module.run)
            if "baseline_src" in inspect.signature(run).parameters:
                results += run(args.quick, baseline_src=args.baseline_src)
            else:
                results += run(args.quick)
            offered = getattr(module, "profile", None)
            if args.profile and offered is not None:
                profiles.append((name, cast(Callable[[bool], str], offered)(args.quick)))
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"  {name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    for name, text in profiles:
        print(f"== profile: {name} ==\n{text}\n")
    print(table(results))
    checked = [r for r in results if r.met is not None]
    met = sum(1 for r in checked if r.met)
    mode = "quick" if args.quick else "full"
    print(
        f"\n{met}/{len(checked)} targets met; {mode} run; load average {_load()}; "
        f"{time.perf_counter() - started:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _load() -> str:
    """The 1-, 5- and 15-minute load averages: how much else the machine was doing."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(main())
