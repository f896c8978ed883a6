"""Instructions an embedded authorize + settle pair costs, counted by valgrind's callgrind.

Time drifts on a shared machine by a fifth between runs of the same code; a count of
instructions does not, so it shows steps of a few per cent that timed runs hide (it does
not see the disk: the contenders run at ``synchronous=NORMAL``). Each contender of
benchmark 1 (``benchmarks.embedded``) runs its pairs in a process of its own under
callgrind, once with few pairs and once with more: the difference, divided by the
difference in pairs, is what a pair costs, without the start-up (imports, the database's
set-up). Two versions of the code compare by running this with each on the path::

    python -m benchmarks.run --only instructions
    PYTHONPATH=../other-checkout/src python -m benchmarks.run --only instructions

It needs ``valgrind`` (Debian's package of that name) and takes about 2 minutes (1 with
``--quick``); ``benchmarks.run`` runs it only when asked for by name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import Result, compared
from benchmarks.embedded import Contender, Library, RawSqlite

CONTENDERS: dict[str, Callable[[Path, str], Contender]] = {
    "creditmeter": Library,
    "sqlite3": RawSqlite,
}


def _count(contender: str, pairs: int) -> int:
    """The instructions of a process that runs ``pairs`` pairs of ``contender``."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        contender,
        str(pairs),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind gave no count: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_pair(contender: str, few: int, more: int) -> float:
    """Instructions a pair of ``contender``: two processes, run side by side."""
    with ThreadPoolExecutor(2) as pool:
        small, large = pool.map(lambda pairs: _count(contender, pairs), (few, more))
    return (large - small) / (more - few)


def run(quick: bool) -> list[Result]:
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (Debian: apt install valgrind)")
    few, more = (100, 300) if quick else (300, 700)
    library, raw = (per_pair(name, few, more) / 1e6 for name in CONTENDERS)
    print(
        f"  instructions: {few} and {more} pairs a contender; creditmeter {library:.3f} M,"
        f" sqlite3 {raw:.3f} M a pair",
        file=sys.stderr,
    )
    return [
        compared(
            "embedded pair, instructions (callgrind, NORMAL)",
            library,
            "M a pair",
            raw,
            "M a pair sqlite3",
            target="(information)",
            meets=None,
        )
    ]


def _pairs(contender: str, pairs: int) -> None:
    """Run in the measured process: a new database, then ``pairs`` pairs."""
    with tempfile.TemporaryDirectory(prefix="creditmeter-instructions-") as tmp:
        chosen = CONTENDERS[contender](Path(tmp) / "bench.db", "NORMAL")
        try:
            for _ in range(pairs):
                chosen.pair()
        finally:
            chosen.close()


if __name__ == "__main__":
    _pairs(sys.argv[1], int(sys.argv[2]))
