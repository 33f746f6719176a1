"""`cyklo report-lifecycle`: the lifecycle KPIs of a period as readable tables, JSON or CSV."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from settings import get_settings


def report_lifecycle(
    since: Annotated[
        str | None, typer.Option(help="From this day (UTC) or ISO time, e.g. 2026-03-01 (default: a year before --until).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this day (included) or before this ISO time (default: now).")
    ] = None,
    weekly: Annotated[bool, typer.Option("--weekly", help="Stage flows per ISO week instead of per month.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON (as the API serves it).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="The report as CSV: section, journey, bucket, name, value.")] = False,
) -> None:
    """Lifecycle KPIs: customers per stage now (from Temporal), stage flows, retention and
    churn, cohorts by sign-up month, CLV, average order value, repeat purchases, NPS and CAC."""
    from cli.report import day_or_time
    from reports.funnel import Period
    from reports.lifecycle import Granularity, lifecycle_report, period, published_versions
    from storage.database import migrate, session_for
    from storage.models import utcnow
    from visibility import stage_census

    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--json/--csv")
    try:
        # Days as `cyklo report` reads them: an --until day is included whole.
        asked = Period.of(day_or_time(since, "--since"), day_or_time(until, "--until"))
        start, end = period(asked.since, asked.until, utcnow())
    except ValueError as problem:
        raise typer.BadParameter(str(problem), param_hint="--since/--until") from None
    settings = get_settings()
    migrate(settings.database_url)
    with session_for(settings.database_url, read_only=True) as session:
        journeys = published_versions(session)
    now = asyncio.run(stage_census(settings, journeys))
    with session_for(settings.database_url, read_only=True) as session:
        report = lifecycle_report(
            session,
            start,
            end,
            stages_now=now,
            granularity=Granularity.WEEK if weekly else Granularity.MONTH,
            currency=settings.currency,
        )
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    elif as_csv:
        typer.echo(report.as_csv(), nl=False)
    else:
        typer.echo(report.as_text())
