"""Charts of the reports as SVG, drawn on the server: the report page needs no chart library
and nothing from a CDN (the machine may have no internet), and a chart is a plain string a
test can read.

Pure: each function takes labelled numbers and returns one `<svg>` element; every text is
escaped, so a journey, stage or template name cannot inject markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 820
ROW = 26
LABEL = 190
"""Pixels kept for the labels left of the bars."""
NOTE = 300
"""Pixels kept for the notes right of the longest bar."""
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str = ""
    """Shown after the bar (`12 sent · 3.4 %`); the value when empty."""


@dataclass(frozen=True)
class Interval:
    """A share with its confidence interval (all in 0..1)."""

    label: str
    value: float
    low: float
    high: float
    note: str = ""


def _svg(title: str, height: int, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" {FONT}><title>{escape(title)}</title>'
        f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>{"".join(body)}</svg>'
    )


def bar_chart(title: str, bars: Sequence[Bar]) -> str:
    """Horizontal bars scaled to the largest value: a step funnel, stage flows."""
    largest = max((bar.value for bar in bars), default=0.0) or 1.0
    room = WIDTH - LABEL - NOTE
    body = []
    for index, bar in enumerate(bars):
        y = 24 + index * ROW
        length = max(0.0, bar.value) / largest * room
        body.append(
            f'<text x="{LABEL - 6}" y="{y + 15}" text-anchor="end">{escape(bar.label)}</text>'
            f'<rect class="bar" x="{LABEL}" y="{y + 4}" width="{length:.1f}" height="{ROW - 8}" fill="#3b6fb6"/>'
            f'<text x="{LABEL + length + 6:.1f}" y="{y + 15}">{escape(bar.note or _number(bar.value))}</text>'
        )
    return _svg(title, 30 + len(bars) * ROW, body)


def interval_chart(title: str, intervals: Sequence[Interval]) -> str:
    """A dot per share and a whisker for its interval, on one 0..top scale: experiment arms."""
    top = max((interval.high for interval in intervals), default=0.0) or 1.0
    room = WIDTH - LABEL - NOTE

    def x(share: float) -> float:
        return LABEL + min(max(share, 0.0), top) / top * room

    body = [f'<line x1="{LABEL}" y1="22" x2="{LABEL}" y2="{24 + len(intervals) * ROW}" stroke="#999"/>']
    for index, interval in enumerate(intervals):
        y = 24 + index * ROW + ROW / 2
        note = interval.note or f"{interval.value:.1%} ({interval.low:.1%}–{interval.high:.1%})"
        body.append(
            f'<text x="{LABEL - 6}" y="{y + 4}" text-anchor="end">{escape(interval.label)}</text>'
            f'<line class="interval" x1="{x(interval.low):.1f}" y1="{y}" x2="{x(interval.high):.1f}" y2="{y}" '
            f'stroke="#3b6fb6" stroke-width="2"/>'
            f'<circle class="share" cx="{x(interval.value):.1f}" cy="{y}" r="4" fill="#1d3f73"/>'
            f'<text x="{x(top) + 8:.1f}" y="{y + 4}">{escape(note)}</text>'
        )
    return _svg(title, 30 + len(intervals) * ROW, body)


def heat_map(
    title: str, rows: Sequence[str], columns: Sequence[str], shares: Sequence[Sequence[float | None]]
) -> str:
    """A table of shares (0..1) shaded by value, blank where there is none yet: a cohort table."""
    cell = max(28, min(60, (WIDTH - LABEL) // max(1, len(columns))))
    body = [
        f'<text x="{LABEL + index * cell + cell / 2}" y="34" text-anchor="middle">{escape(column)}</text>'
        for index, column in enumerate(columns)
    ]
    for row_index, (row, values) in enumerate(zip(rows, shares, strict=True)):
        y = 40 + row_index * ROW
        body.append(f'<text x="{LABEL - 6}" y="{y + 17}" text-anchor="end">{escape(row)}</text>')
        for column_index, share in enumerate(values):
            if share is None:
                continue
            x = LABEL + column_index * cell
            shade = 0.08 + 0.92 * min(max(share, 0.0), 1.0)
            ink = "#fff" if shade > 0.55 else "#000"
            body.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell - 2}" height="{ROW - 2}" '
                f'fill="#1d3f73" fill-opacity="{shade:.2f}"/>'
                f'<text x="{x + cell / 2 - 1}" y="{y + 17}" text-anchor="middle" fill="{ink}">{share:.0%}</text>'
            )
    return _svg(title, 46 + len(rows) * ROW, body)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
