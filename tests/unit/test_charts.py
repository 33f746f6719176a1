"""The report page's charts: what each draws, escaped, from the numbers it is given."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import pytest

from reports.charts import CHARACTER, Bar, Funnel, Interval, bar_chart, funnel_chart, heat_map, interval_chart

pytestmark = pytest.mark.unit

SVG = "{http://www.w3.org/2000/svg}"


def parsed(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # noqa: S314 - our own output, under test


def test_bars_are_scaled_to_the_largest_value_and_labelled() -> None:
    svg = parsed(bar_chart("welcome funnel", [Bar("sent", 200), Bar("opened", 50, "50 · 25.0 %")]))

    widths = [float(rect.get("width", "0")) for rect in svg.iter(f"{SVG}rect")]
    texts = [text.text for text in svg.iter(f"{SVG}text")]
    assert widths[0] == pytest.approx(4 * widths[1])
    assert texts == ["welcome funnel", "sent", "200", "opened", "50 · 25.0 %"]


def test_an_interval_is_a_whisker_from_low_to_high_with_the_share_on_it() -> None:
    svg = parsed(
        interval_chart("arms", [Interval("a", 0.1, 0.05, 0.2), Interval("holdout", 0.05, 0.01, 0.1)])
    )

    whiskers = [(float(line.get("x1", 0)), float(line.get("x2", 0))) for line in svg.iter(f"{SVG}line")][1:]
    dots = [float(circle.get("cx", 0)) for circle in svg.iter(f"{SVG}circle")]
    assert whiskers[0][0] < dots[0] < whiskers[0][1]
    assert whiskers[0][1] > whiskers[1][1], "the wider interval reaches further"
    assert "10.0% (5.0%–20.0%)" in [text.text for text in svg.iter(f"{SVG}text")]


def test_a_heat_map_shades_each_share_and_leaves_months_not_yet_lived_blank() -> None:
    svg = heat_map("cohorts", ["2026-01", "2026-02"], ["0", "1"], [[1.0, 0.25], [0.5, None]])

    cells = re.findall(r'fill-opacity="([0-9.]+)"', svg)
    assert [float(value) for value in cells] == [1.0, 0.31, 0.54]
    assert [text.text for text in parsed(svg).iter(f"{SVG}text")][-1] == "50%"


def test_names_cannot_inject_markup() -> None:
    svg = bar_chart("<script>", [Bar("</text><script>alert(1)</script>", 1)])

    assert "<script>" not in svg
    parsed(svg)  # still one well-formed document


def test_a_funnel_per_step_narrows_from_sent_to_converted_centred_and_joined_by_bands() -> None:
    levels = [
        Bar("sent", 200),
        Bar("delivered", 180),
        Bar("opened", 90),
        Bar("clicked", 30),
        Bar("converted", 10),
    ]
    svg = parsed(funnel_chart("steps", [Funnel("welcome", levels), Funnel("nudge", [Bar("sent", 0)])]))

    rects = [rect for rect in svg.iter(f"{SVG}rect") if rect.get("class") == "level"]
    widths = [float(rect.get("width", "0")) for rect in rects]
    centres = [float(rect.get("x", "0")) + width / 2 for rect, width in zip(rects, widths, strict=True)]
    assert widths[:5] == pytest.approx([widths[0] * share for share in (1, 0.9, 0.45, 0.15, 0.05)])
    assert widths[5] == 0.0, "a step that sent nothing draws an empty funnel, not a division by zero"
    assert centres == pytest.approx([centres[0]] * 6, abs=0.1), "every level is centred under the one before"
    assert len([band for band in svg.iter(f"{SVG}polygon") if band.get("class") == "band"]) == 4
    steps = [text.text for text in svg.iter(f"{SVG}text") if text.get("class") == "step"]
    assert steps == ["welcome", "nudge"]


def test_an_arms_long_note_fits_in_the_chart() -> None:
    note = "50.0% (9.5%–90.5%) · p 0.386 vs holdout · 125.00 PLN/customer"
    long = "x" * 120
    for written in (note, long):
        svg = parsed(interval_chart("arms", [Interval("free_delivery (2)", 0.5, 0.095, 0.905, written)]))

        [text] = [text for text in svg.iter(f"{SVG}text") if text.text == written]
        assert float(text.get("x", "0")) + len(written) * CHARACTER <= float(svg.get("width", "0"))
