"""Charts drawn as SVG on the server."""

from __future__ import annotations

from datetime import date

from creditmeter.api.dashboards import charts


def test_a_stacked_chart_keeps_every_credit_and_folds_small_keys_into_other() -> None:
    first, last = date(2026, 3, 1), date(2026, 3, 3)
    rows = [(date(2026, 3, 2), f"feature-{n}", 10 * (n + 1)) for n in range(9)]
    rows.append((date(2026, 3, 3), "feature-8", 5))
    chart = charts.stacked_by_day(rows, first, last, label="Usage")
    assert len(chart.series) == charts.MAX_SERIES
    assert chart.series[-1].key == charts.OTHER
    assert chart.days == (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3))
    assert sum(sum(values) for _, values in chart.table) == sum(r[2] for r in rows)
    assert sum(s.total for s in chart.series) == sum(r[2] for r in rows)
    assert chart.svg.startswith('<svg class="chart"')
    assert 'aria-label="Usage"' in chart.svg


def test_axis_labels_are_round() -> None:
    assert [charts._nice_ceiling(v) for v in (0, 1, 3, 7, 12, 2_600, 50_001)] == [
        1,
        1,
        5,
        10,
        20,
        5_000,
        100_000,
    ]
    assert [charts._short(v) for v in (0, 950, 1_000, 1_500, 12_000, 2_500_000)] == [
        "0",
        "950",
        "1k",
        "1.5k",
        "12k",
        "2.5M",
    ]


def test_a_bar_is_clamped() -> None:
    assert 'width="100.0"' in charts.bar(1_500).split("bar-fill")[1]
    assert 'width="0.0"' in charts.bar(-5).split("bar-fill")[1]
