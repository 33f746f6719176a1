"""The report page's sections: each report of reports/ read once and drawn as charts."""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.charts import Bar, bar_chart
from reports.funnel import Period, journeys_report
from settings import Settings
from storage.database import session_for


@dataclass(frozen=True)
class Section:
    title: str
    charts: list[str] = field(default_factory=list)
    """SVG documents, safe to place in the page as they are (every text escaped)."""
    notes: list[str] = field(default_factory=list)


def report_charts(settings: Settings, period: Period) -> list[Section]:
    with session_for(settings.database_url, read_only=True) as session:
        journeys = journeys_report(session, None, period, settings.currency)
    sections = []
    for funnel in journeys.journeys:
        rate = f"{funnel.conversion_rate:.1%}" if funnel.conversion_rate is not None else "—"
        steps = [
            Bar(
                f"{step.stage} · {step.template} ({step.channel})",
                step.sent,
                f"{step.sent} sent · {step.converted} converted"
                + (f" ({step.conversion_rate:.1%})" if step.conversion_rate is not None else "")
                + f" · {step.revenue:,.2f} {funnel.currency}",
            )
            for step in funnel.steps
        ]
        entries = [Bar(stage, count) for stage, count in funnel.stage_entries.items()]
        sections.append(
            Section(
                f"Journey {funnel.journey_id}",
                [bar_chart("Messages sent and what they earned, by step", steps), bar_chart("Stage entries", entries)],
                [
                    f"{funnel.entered} customers entered · {funnel.sent} messages sent · {funnel.converted} "
                    f"converted ({rate}) · revenue {funnel.revenue:,.2f} {funnel.currency}"
                ],
            )
        )
    return sections
