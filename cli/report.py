"""`cyklo report`: the whole results of a period — what each journey and step earns, the
experiments and the lifecycle KPIs — from the database's tables (and Temporal's counts of
customers per stage now). `cyklo report-experiments` and `cyklo report-lifecycle` print one
section of it, built by the same functions."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from cli.output import json_text
from settings import Settings, get_settings

if TYPE_CHECKING:
    from reports.experiments import ExperimentsReport
    from reports.funnel import JourneysReport, Period
    from reports.lifecycle import LifecycleReport

JOURNEY_HELP = "One journey: its funnel, its splits, its stages (default: every journey)."


def report(
    journey: Annotated[str | None, typer.Option(help=JOURNEY_HELP)] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="From this day (UTC) or ISO time, e.g. 2026-03-01: messages by their send time, "
            "assignments, stage entries (the lifecycle's default: a year before --until)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this day (included) or before this ISO time (default: now).")
    ] = None,
    weekly: Annotated[
        bool, typer.Option("--weekly", help="The lifecycle's stage flows per ISO week, not per month.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one object: journeys, experiments, lifecycle (each as its API route serves it).",
        ),
    ] = False,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Print one CSV table: a leading `section` column (journeys: a row per step; experiments: "
            "a row per arm; lifecycle: a row per figure, its part in `kpi`), then every section's columns.",
        ),
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="First recompute every conversion from the ledger and the events."),
    ] = False,
) -> None:
    """The results of a period, as readable tables: per journey and step customers entered,
    sent, delivered, opened, clicked, bounced, converted, conversion rate, revenue,
    unsubscribed and what was not sent and why; per split each arm's conversion with its 95 %
    interval, difference and p-value, and the programme against the global control group;
    the lifecycle KPIs (customers per stage now, stage flows, retention and churn, cohorts,
    CLV, orders, NPS, CAC). --journey narrows what is per journey."""
    from reports.funnel import Period
    from reports.results import Results
    from storage import conversions
    from storage.database import migrate, session_for

    one_format(as_json, as_csv)
    settings = get_settings()
    asked = Period.of(day_or_time(since, "--since"), day_or_time(until, "--until"))
    migrate(settings.database_url)
    if rebuild:
        with session_for(settings.database_url) as session:
            credited = conversions.rebuild(session)
        typer.echo(f"conversions rebuilt: {credited} purchases credited", err=True)
    results = Results(
        journeys=journeys_section(settings, journey, asked),
        experiments=experiments_section(settings, journey, asked),
        lifecycle=lifecycle_section(settings, journey, asked, weekly=weekly),
    )
    echo(results, as_json, as_csv)


def journeys_section(settings: Settings, journey: str | None, period: Period) -> JourneysReport:
    from reports.funnel import journeys_report
    from storage.database import session_for

    with session_for(settings.database_url, read_only=True) as session:
        return journeys_report(session, journey, period, settings.currency)


def experiments_section(settings: Settings, journey: str | None, period: Period) -> ExperimentsReport:
    from api.reports_experiments import read_experiments

    return read_experiments(settings, journey, period)


def lifecycle_section(
    settings: Settings, journey: str | None, asked: Period, *, weekly: bool = False
) -> LifecycleReport:
    """The lifecycle KPIs of the period asked (default: the year to now), with the customers
    per stage now from Temporal (or why they are unknown)."""
    from reports.lifecycle import Granularity, lifecycle_report, period, published_versions
    from storage.database import session_for
    from storage.models import utcnow
    from visibility import stage_census

    try:
        start, end = period(asked.since, asked.until, utcnow())
    except ValueError as problem:
        raise typer.BadParameter(str(problem), param_hint="--since/--until") from None
    with session_for(settings.database_url, read_only=True) as session:
        journeys = published_versions(session)
    if journey is not None:
        journeys = {journey: journeys[journey]} if journey in journeys else {}
    now = asyncio.run(stage_census(settings, journeys))
    with session_for(settings.database_url, read_only=True) as session:
        found = lifecycle_report(
            session,
            start,
            end,
            stages_now=now,
            granularity=Granularity.WEEK if weekly else Granularity.MONTH,
            currency=settings.currency,
        )
    return found if journey is None else found.of_journey(journey)


class Printable(Protocol):
    """A report or a section of one: its tables and its CSV (and, being a model, its JSON)."""

    def as_text(self) -> str: ...

    def as_csv(self) -> str: ...


def echo(report: Printable, as_json: bool, as_csv: bool) -> None:
    if as_json:
        typer.echo(json_text(report))
    elif as_csv:
        typer.echo(report.as_csv(), nl=False)
    else:
        typer.echo(report.as_text().rstrip("\n"))


def one_format(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--json/--csv")


def day_or_time(text: str | None, option: str) -> date | datetime | None:
    """A day (`2026-03-31`) or an ISO time (`2026-03-31T12:00:00+02:00`)."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a day (2026-03-31) or an ISO time (2026-03-31T12:00:00+02:00)",
            param_hint=option,
        ) from None
