"""Charts drawn on the server as inline SVG: no script, no third-party code, readable
without colour (each chart comes with its numbers in a table)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

PALETTE = ("#4f46e5", "#0891b2", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#64748b")
OTHER = "other"
MAX_SERIES = len(PALETTE)


@dataclass(frozen=True)
class Series:
    key: str
    colour: str
    total: int


@dataclass(frozen=True)
class StackedChart:
    svg: str
    series: tuple[Series, ...]
    days: tuple[date, ...]
    table: tuple[tuple[date, tuple[int, ...]], ...]


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at least ``value``."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _short(value: int) -> str:
    """``1.5k``, ``12M``: an axis label, in integer arithmetic."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            whole, rest = divmod(value, size)
            tenth = rest * 10 // size
            return f"{whole}.{tenth}{suffix}" if tenth and whole < 10 else f"{whole}{suffix}"
    return str(value)


def stacked_by_day(
    rows: Sequence[tuple[date, str, int]], first: date, last: date, *, label: str
) -> StackedChart:
    """Credits per day from ``first`` to ``last`` stacked by key: the largest keys get a
    colour each, the rest are one ``other``."""
    totals: dict[str, int] = {}
    for _, key, credits in rows:
        totals[key] = totals.get(key, 0) + credits
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    kept = ranked[: MAX_SERIES - 1] if len(ranked) > MAX_SERIES else ranked
    keys = [*kept, OTHER] if len(ranked) > len(kept) else kept
    series = tuple(
        Series(
            key,
            PALETTE[i],
            totals[key] if key != OTHER else sum(totals[k] for k in ranked[len(kept) :]),
        )
        for i, key in enumerate(keys)
    )
    days = tuple(first + timedelta(days=n) for n in range((last - first).days + 1))
    cells = {d: [0] * len(series) for d in days}
    index = {s.key: i for i, s in enumerate(series)}
    for day, key, credits in rows:
        if day in cells:
            cells[day][index.get(key, len(series) - 1)] += credits
    table = tuple((d, tuple(cells[d])) for d in days)
    return StackedChart(_draw(table, series, label), series, days, table)


WIDTH, HEIGHT = 720, 240
LEFT, BOTTOM, TOP, RIGHT = 48, 28, 12, 8
STEPS = 5
"""Grid lines above the axis: a 1, 2 or 5 × 10^n peak makes round values of them."""


def _draw(
    table: tuple[tuple[date, tuple[int, ...]], ...], series: tuple[Series, ...], label: str
) -> str:
    peak = _nice_ceiling(max((sum(v) for _, v in table), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(table), 1)
    bar = max(slot * 0.7, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label, quote=True)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(label)}</title>",
    ]
    for step in range(STEPS + 1):
        value = peak * step // STEPS
        y = TOP + plot_h - plot_h * step / STEPS
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_short(value)}</text>"
        )
    for n, (day, values) in enumerate(table):
        x = LEFT + n * slot + (slot - bar) / 2
        base: float = TOP + plot_h
        for value, s in zip(values, series, strict=True):
            if value <= 0:
                continue
            h = plot_h * value / peak
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{s.colour}"><title>{day:%d %b}: {escape(s.key)} {value:,}</title></rect>'
            )
        if n % max(len(table) // 6, 1) == 0 or n == len(table) - 1:
            parts.append(
                f'<text class="axis" x="{x + bar / 2:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{day.day} {day:%b}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def bar(fraction_permille: int, *, state: str = "") -> str:
    """A horizontal bar filled to ``fraction_permille`` / 1000 (clamped), as SVG: sized by
    attributes, so the page's style policy needs no inline style."""
    filled = min(max(fraction_permille, 0), 1000) / 10
    return (
        '<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" '
        'focusable="false"><rect class="bar-track" width="100" height="8"/>'
        f'<rect class="bar-fill {escape(state, quote=True)}" width="{filled:.1f}" height="8"/>'
        "</svg>"
    )
