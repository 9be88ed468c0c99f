"""Geometry for the pages' inline SVG bar charts: bars, a value axis with round ticks, labels
under the bars, and an optional line on a second axis. The template ``_chart.html`` draws it.

Hand-written rather than a charting library: the pages draw a few dozen bars as plain SVG
(no script, allowed by the pages' CSP), and a library would bring JavaScript or images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 56, 10, 34  # room for the axes' labels
MAX_SLOT = 48.0  # a short series keeps narrow bars instead of a few giant ones
MIN_BAR = 3.0  # a bar of a small, non-zero value stays visible


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar (only some are written when there are many)
    value: float | Decimal
    title: str  # the tooltip and the accessible description
    css: str = "bar-ok"
    href: str | None = None
    flagged: bool = False  # drawn with a full-height band behind it (a failed run), readable at any value
    line_value: float | None = None


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    plot: tuple[float, float, float, float] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    bars: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    line_ticks: list[tuple[float, str]] = field(default_factory=list)
    labels: list[tuple[float, str]] = field(default_factory=list)
    line: str = ""
    points: list[tuple[float, float]] = field(default_factory=list)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above ``value``: the top of an axis."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value))


def bar_chart(
    bars: Sequence[Bar],
    value_text: Callable[[float], str],
    line_text: Callable[[float], str] | None = None,
    *,
    labels_every: int | None = None,
) -> Chart:
    chart = Chart()
    if not bars:
        return chart
    left, top, right, bottom = chart.plot
    plot_height = bottom - top
    slot = min((right - left) / len(bars), MAX_SLOT)
    ceiling = nice_ceiling(max(float(b.value) for b in bars))
    chart.ticks = [(bottom - plot_height * i / 4, value_text(ceiling * i / 4)) for i in range(5)]
    line_values = [b.line_value for b in bars if b.line_value is not None]
    line_ceiling = nice_ceiling(max(line_values)) if line_values else 1.0
    if line_values and line_text is not None:
        chart.line_ticks = [(bottom - plot_height * i / 4, line_text(line_ceiling * i / 4)) for i in range(5)]
    every = labels_every or max(1, math.ceil(len(bars) / 6))
    for index, bar in enumerate(bars):
        x = left + index * slot
        value = float(bar.value)
        height = plot_height * value / ceiling
        if value > 0:
            height = max(height, MIN_BAR)
        chart.bars.append({
            "x": round(x + slot * 0.15, 1), "width": round(slot * 0.7, 1), "y": round(bottom - height, 1),
            "height": round(height, 1), "css": bar.css, "title": bar.title, "href": bar.href,
            "flagged": bar.flagged, "slot_x": round(x, 1), "slot_width": round(slot, 1),
        })  # fmt: skip
        if index % every == 0:
            chart.labels.append((round(x + slot / 2, 1), bar.label))
        if bar.line_value is not None:
            chart.points.append(
                (round(x + slot / 2, 1), round(bottom - plot_height * bar.line_value / line_ceiling, 1))
            )
    chart.line = " ".join(f"{x},{y}" for x, y in chart.points)
    return chart
