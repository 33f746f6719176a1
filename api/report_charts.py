"""The report page's sections: each report of reports/ read once and drawn as charts."""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.charts import Bar, Funnel, Interval, bar_chart, funnel_chart, heat_map, interval_chart
from reports.experiments import ExperimentsReport, experiments_report
from reports.funnel import Period, StepFunnel, journeys_report, not_sent_text
from reports.lifecycle import LifecycleReport
from settings import Settings
from storage.database import session_for


@dataclass(frozen=True)
class Section:
    key: str
    """The section's id in the page."""
    title: str
    charts: list[str] = field(default_factory=list)
    """SVG documents, safe to place in the page as they are (every text escaped)."""
    notes: list[str] = field(default_factory=list)


def report_charts(settings: Settings, period: Period, lifecycle: LifecycleReport) -> list[Section]:
    with session_for(settings.database_url, read_only=True) as session:
        journeys = journeys_report(session, None, period, settings.currency)
        experiments = experiments_report(
            session, since=period.since, until=period.until, holdout_percent=settings.global_holdout_percent
        )
    sections = []
    for funnel in journeys.journeys:
        rate = f"{funnel.conversion_rate:.1%}" if funnel.conversion_rate is not None else "—"
        steps = [step_funnel(step, funnel.currency) for step in funnel.steps]
        entries = [Bar(stage, count) for stage, count in funnel.stage_entries.items()]
        sections.append(
            Section(
                f"journey-{funnel.journey_id}",
                f"Journey {funnel.journey_id}",
                [
                    funnel_chart(
                        "What each step's messages became: sent → delivered → opened → clicked → converted",
                        steps,
                    ),
                    bar_chart("Stage entries", entries),
                ],
                [
                    f"{funnel.entered} customers entered · {funnel.sent} messages sent · {funnel.converted} "
                    f"converted ({rate}) · revenue {funnel.revenue:,.2f} {funnel.currency}"
                ],
            )
        )
    sections.append(_experiments(experiments, settings.currency))
    sections.append(_lifecycle(lifecycle))
    return sections


def step_funnel(step: StepFunnel, currency: str) -> Funnel:
    """A step's funnel: each level with its count and its share of the messages sent."""

    def level(name: str, count: int) -> Bar:
        share = f" · {count / step.sent:.1%} of sent" if step.sent and name != "sent" else ""
        return Bar(name, count, f"{count} {name}{share}")

    earned = f"{step.revenue:,.2f} {currency}"
    not_sent = not_sent_text(step)
    return Funnel(
        f"{step.stage} · {step.template} ({step.channel}) — {step.converted} converted, {earned}"
        + (f" · not sent: {not_sent}" if not_sent else ""),
        [
            level("sent", step.sent),
            level("delivered", step.delivered),
            level("opened", step.opened),
            level("clicked", step.clicked),
            level("converted", step.converted),
        ],
    )


def _experiments(report: ExperimentsReport, currency: str) -> Section:
    charts = []
    notes = []
    for split in report.splits:
        arms = [
            Interval(
                f"{arm.arm} ({arm.customers})",
                arm.conversion_rate,
                arm.conversion_interval.low,
                arm.conversion_interval.high,
                f"{arm.conversion_rate:.1%} ({arm.conversion_interval.low:.1%}–{arm.conversion_interval.high:.1%})"
                + (f" · p {arm.p_value:.3f} vs {split.baseline}" if arm.p_value is not None else "")
                + f" · {arm.revenue_per_customer:,.2f} {currency}/customer",
            )
            for arm in split.arms
        ]
        charts.append(
            interval_chart(f"{split.journey_id} · {split.split}: conversion within {split.window}", arms)
        )
        if split.winner is not None:
            notes.append(
                f"{split.journey_id} · {split.split}: {split.winner.arm} won on {split.winner.decided_at:%Y-%m-%d %H:%M}"
            )
    programme = report.programme
    if programme is not None:
        interval = (
            f" ({programme.interval.low:+,.2f} to {programme.interval.high:+,.2f})"
            if programme.interval
            else ""
        )
        notes.append(
            f"The whole programme against the {programme.holdout_percent:g} % control group: "
            f"{programme.incremental_revenue_per_customer:+,.2f} {currency} per customer{interval}"
        )
    if not charts and not notes:
        notes.append("No experiment has assignments in this period.")
    return Section("experiments", "Experiments", charts, notes)


def _lifecycle(report: LifecycleReport) -> Section:
    charts = []
    notes = []
    if report.stages_now is not None:
        now = [
            Bar(f"{journey.journey_id} · {stage}", count)
            for journey in report.stages_now
            for stage, count in journey.by_stage.items()
        ]
        charts.append(bar_chart("Customers in each stage now", now))
    else:
        notes.append(f"Customers per stage now: unknown ({report.stages_now_unavailable})")
    flows = [
        Bar(f"{flow.bucket} · {flow.from_stage or 'start'} → {flow.to_stage}", flow.customers)
        for flow in report.flows
    ]
    charts.append(bar_chart(f"Stage flows per {report.granularity}", flows))
    if report.cohorts:
        months = max(len(cohort.shares) for cohort in report.cohorts)
        charts.append(
            heat_map(
                "Share of each sign-up month's customers who bought, by month since sign-up",
                [f"{cohort.month} ({cohort.customers})" for cohort in report.cohorts],
                [f"m{index}" for index in range(months)],
                [[*cohort.shares, *[None] * (months - len(cohort.shares))] for cohort in report.cohorts],
            )
        )
    for retention in report.retention:
        if retention.churn_rate is not None:
            notes.append(
                f"{retention.journey_id}: of {retention.base} customers active or VIP at the start, "
                f"{retention.churned} became inactive (churn {retention.churn_rate:.1%})"
            )
    orders, nps, acquisition = report.orders, report.nps, report.acquisition
    money = report.currency
    notes.append(
        f"{orders.purchases} orders by {orders.customers} customers · revenue {orders.revenue:,.2f} {money}"
        + (
            f" · average order {orders.average_order_value:,.2f} {money}"
            if orders.average_order_value
            else ""
        )
        + (
            f" · repeat purchase rate {orders.repeat_purchase_rate:.1%}"
            if orders.repeat_purchase_rate is not None
            else ""
        )
    )
    if report.clv_to_date is not None:
        notes.append(f"Revenue per customer to date (CLV): {report.clv_to_date:,.2f} {money}")
    notes.append(
        f"NPS {nps.score:+.0f} ({nps.responses} answers)" if nps.score is not None else "NPS: no answers yet"
    )
    notes.append(
        f"CAC {acquisition.cac:,.2f} {money}" if acquisition.cac is not None else "CAC: not available"
    )
    return Section("lifecycle", "Lifecycle", charts, notes)
