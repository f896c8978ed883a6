"""Benchmarks of creditmeter, each against a baseline measured in the same process.

A benchmark module exposes ``def run(quick: bool) -> list[Result]`` (and, optionally,
``def profile(quick: bool) -> str``); ``benchmarks.run`` lists the modules and prints one
table. Absolute times drift on a shared machine, so every figure that has a target is
compared with a baseline taken in the same run, alternating the two where it matters.
"""

from __future__ import annotations

import cProfile
import math
import pstats
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import creditmeter


@dataclass(frozen=True)
class Result:
    """One measured figure, its baseline, and whether it meets its target.

    ``ratio`` is ``figure / baseline`` (or the median of that ratio over alternating
    rounds, which may differ a little from the ratio of the medians); ``target`` says in
    words what ``met`` checked (``met`` is ``None`` for a figure given for information).
    """

    name: str
    figure: float
    unit: str
    baseline: float | None = None
    baseline_unit: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


def compared(
    name: str,
    figure: float,
    unit: str,
    baseline: float,
    baseline_unit: str,
    *,
    target: str,
    meets: Callable[[float], bool] | None,
    ratio: float | None = None,
) -> Result:
    """A result whose ratio is checked by ``meets``: ``figure / baseline`` unless given
    (say, the median of ratios taken round by round, which cancels drift better)."""
    if ratio is None:
        ratio = figure / baseline if baseline else math.inf
    return Result(
        name=name,
        figure=figure,
        unit=unit,
        baseline=baseline,
        baseline_unit=baseline_unit,
        ratio=ratio,
        target=target,
        met=None if meets is None else meets(ratio),
    )


def absolute(
    name: str, figure: float, unit: str, *, target: str, meets: Callable[[float], bool]
) -> Result:
    """A result checked against a fixed bound rather than a baseline."""
    return Result(name=name, figure=figure, unit=unit, target=target, met=meets(figure))


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100) by the nearest-rank method."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def number(value: float) -> str:
    """A figure with as many digits as it deserves."""
    if value == 0 or math.isinf(value) or math.isnan(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(results: Sequence[Result]) -> str:
    """The results as a plain-text table, figure and baseline side by side."""
    header = ("benchmark", "figure", "baseline", "ratio", "target", "met")
    rows = [header]
    for r in results:
        baseline = "" if r.baseline is None else f"{number(r.baseline)} {r.baseline_unit}"
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        figure = "not measured" if math.isnan(r.figure) else f"{number(r.figure)} {r.unit}"
        rows.append((r.name, figure, baseline, ratio, r.target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            cell.rjust(width) if 0 < column < 4 and i else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# Profiling: the statements an operation sends, and where its time goes.

_TABLE = re.compile(r"^\s*(SELECT\b.*?\bFROM\s+(\S+)|INSERT INTO\s+(\S+)|UPDATE\s+(\S+))", re.S)


def _statement(sql: str) -> str:
    """``SELECT … FROM accounts``, ``UPDATE grants``: what a statement does, briefly."""
    found = _TABLE.match(sql)
    if found is None:
        return " ".join(sql.split())[:40]
    if found.group(2):
        return f"SELECT … FROM {found.group(2)}"
    if found.group(3):
        return f"INSERT INTO {found.group(3)}"
    return f"UPDATE {found.group(4)}"


@contextmanager
def counting_statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The statements ``engine`` sends while the block runs, briefly described (a commit
    or rollback is a DBAPI call, not a statement, and is not counted)."""
    statements: list[str] = []

    def before(
        _conn: object, _cursor: object, sql: str, _params: object, _ctx: object, many: bool
    ) -> None:
        statements.append(_statement(sql) + (" (executemany)" if many else ""))

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def _layer(key: tuple[str, int, str], package: str) -> str:
    filename, _, function = key
    if "sqlite3.Connection" in function and "commit" in function:
        return "sqlite3 commit (fsync of the WAL)"
    if "sqlite3." in function or "psycopg" in filename:
        return "driver (sqlite3 statements, psycopg)"
    if filename.startswith(package):
        return "creditmeter"
    if "/sqlalchemy/" in filename:
        return "SQLAlchemy"
    return "other Python (stdlib, builtins)"


def where_time_goes(profiler: cProfile.Profile, count: int, per: str, top: int = 25) -> list[str]:
    """Own time by layer, and creditmeter's functions by cumulative time, per operation."""
    package = str(Path(creditmeter.__file__).parent)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    layers: dict[str, float] = defaultdict(float)
    for key, (_, _, tt, _, _) in raw.items():
        layers[_layer(key, package)] += tt
    lines = [
        f"cProfile of {count} × {per}: {total / count * 1000:.2f} ms a {per} under the profiler"
        " (which inflates Python-heavy layers); own time by layer:"
    ]
    for layer, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        lines.append(f"  {seconds / total:6.1%}  {seconds / count * 1000:6.3f} ms  {layer}")
    lines += ["", f"creditmeter functions by cumulative time, per {per}:"]
    lines.append("   cum ms   own ms   calls  function")
    ours = sorted(
        ((key, value) for key, value in raw.items() if key[0].startswith(package)),
        key=lambda item: -item[1][3],
    )
    for (filename, lineno, function), (_, calls, tt, ct, _) in ours[:top]:
        where = f"{Path(filename).relative_to(package).as_posix()}:{lineno}"
        lines.append(
            f"  {ct / count * 1000:7.3f}  {tt / count * 1000:7.3f}  {calls / count:6.1f}"
            f"  {function} ({where})"
        )
    return lines
