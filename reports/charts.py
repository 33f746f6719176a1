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
WHISKERS = 200
"""The least pixels an interval chart keeps for its whiskers."""
CHARACTER = 7
"""A generous width of one character of FONT, in pixels, to keep room for a note."""
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


def _svg(title: str, height: int, body: list[str], width: int = WIDTH) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" {FONT}><title>{escape(title)}</title>'
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


@dataclass(frozen=True)
class Funnel:
    """One funnel: its levels from the widest (`sent`) down (`converted`), each a Bar."""

    label: str
    levels: Sequence[Bar]


def funnel_chart(title: str, funnels: Sequence[Funnel]) -> str:
    """A funnel per step: each level a bar centred under the one before, joined to it by a
    band, so the narrowing from sent to converted is seen as a shape. Each funnel is scaled
    to its own widest level (its shape compares with the others; the notes give the counts)."""
    room = WIDTH - LABEL - NOTE
    centre = LABEL + room / 2
    body = []
    y = 24.0
    for funnel in funnels:
        body.append(f'<text class="step" x="0" y="{y + 15}" font-weight="bold">{escape(funnel.label)}</text>')
        y += ROW
        widest = max((level.value for level in funnel.levels), default=0.0) or 1.0
        above: tuple[float, float] | None = None
        for level in funnel.levels:
            half = max(0.0, level.value) / widest * room / 2
            top, bottom = y + 4, y + ROW - 4
            if above is not None:
                body.append(
                    f'<polygon class="band" points="{centre - above[0]:.1f},{above[1]} {centre + above[0]:.1f},{above[1]} '
                    f'{centre + half:.1f},{top} {centre - half:.1f},{top}" fill="#3b6fb6" fill-opacity="0.25"/>'
                )
            body.append(
                f'<text x="{LABEL - 6}" y="{y + 15}" text-anchor="end">{escape(level.label)}</text>'
                f'<rect class="level" x="{centre - half:.1f}" y="{top}" width="{2 * half:.1f}" height="{bottom - top}" '
                f'fill="#3b6fb6"/>'
                f'<text x="{LABEL + room + 6}" y="{y + 15}">{escape(level.note or _number(level.value))}</text>'
            )
            above = (half, bottom)
            y += ROW
        y += ROW / 2
    return _svg(title, int(y) + 6, body)


def interval_chart(title: str, intervals: Sequence[Interval]) -> str:
    """A dot per share and a whisker for its interval, on one 0..top scale: experiment arms."""
    top = max((interval.high for interval in intervals), default=0.0) or 1.0
    notes = [
        interval.note or f"{interval.value:.1%} ({interval.low:.1%}–{interval.high:.1%})"
        for interval in intervals
    ]
    # Long notes (an arm's p-value and revenue) take room from the whiskers, down to a
    # readable least, and then widen the chart.
    note_room = max(NOTE, max((len(note) for note in notes), default=0) * CHARACTER + 8)
    room = max(WHISKERS, WIDTH - LABEL - note_room)

    def x(share: float) -> float:
        return LABEL + min(max(share, 0.0), top) / top * room

    body = [f'<line x1="{LABEL}" y1="22" x2="{LABEL}" y2="{24 + len(intervals) * ROW}" stroke="#999"/>']
    for index, (interval, note) in enumerate(zip(intervals, notes, strict=True)):
        y = 24 + index * ROW + ROW / 2
        body.append(
            f'<text x="{LABEL - 6}" y="{y + 4}" text-anchor="end">{escape(interval.label)}</text>'
            f'<line class="interval" x1="{x(interval.low):.1f}" y1="{y}" x2="{x(interval.high):.1f}" y2="{y}" '
            f'stroke="#3b6fb6" stroke-width="2"/>'
            f'<circle class="share" cx="{x(interval.value):.1f}" cy="{y}" r="4" fill="#1d3f73"/>'
            f'<text x="{x(top) + 8:.1f}" y="{y + 4}">{escape(note)}</text>'
        )
    return _svg(title, 30 + len(intervals) * ROW, body, max(WIDTH, LABEL + room + note_room))


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
