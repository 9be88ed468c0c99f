"""The charts' geometry: round axis tops, bars in proportion, failed runs readable at any size."""

from __future__ import annotations

from decimal import Decimal

import pytest

from arsync.ui.charts import MAX_SLOT, MIN_BAR, Bar, bar_chart, nice_ceiling
from arsync.ui.pages_reports import short_amount


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (0.3, 0.5), (7, 10), (12, 20), (240, 250), (251, 500), (1000, 1000)]
)
def test_an_axis_ends_on_a_round_number_at_or_above_the_largest_value(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_bars_are_in_proportion_to_the_axis_and_small_ones_stay_visible() -> None:
    chart = bar_chart([Bar("a", Decimal("240"), "a"), Bar("b", Decimal("1"), "b"), Bar("c", 0, "c")], str)
    _, top, _, bottom = chart.plot
    full, tiny, empty = chart.bars
    assert full["height"] == pytest.approx((bottom - top) * 240 / 250, abs=0.1)  # the axis tops at 250
    assert tiny["height"] == MIN_BAR and empty["height"] == 0
    assert [label for _, label in chart.ticks] == ["0.0", "62.5", "125.0", "187.5", "250.0"]
    assert full["width"] <= MAX_SLOT  # three bars do not fill the width with giant bars


def test_a_failed_run_is_marked_over_the_whole_height_and_the_line_has_its_own_axis() -> None:
    chart = bar_chart([Bar("1", 100, "ok", line_value=2.0), Bar("2", 0, "failed", flagged=True, line_value=30.0)],
                      str, lambda seconds: f"{seconds:.0f}s")  # fmt: skip
    assert [bar["flagged"] for bar in chart.bars] == [False, True]
    assert [label for _, label in chart.line_ticks][-1] == "50s"
    assert len(chart.points) == 2 and chart.points[1][1] < chart.points[0][1]  # longer is higher


def test_axis_amounts_are_short() -> None:
    assert [short_amount(v) for v in (0, 950, 1500, 2_000_000, 35_800_000)] == ["0", "950", "1.5k", "2M", "35.8M"]
