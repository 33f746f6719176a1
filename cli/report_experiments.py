"""`cyklo report-experiments`: the experiments section of `cyklo report` alone — every
split's arms compared, and the programme against the global control group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.report import day_or_time, echo, experiments_section, one_format
from settings import get_settings


def report_experiments(
    journey: Annotated[str | None, typer.Option(help="Only this journey's splits.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Assignments (and purchases) from this date, e.g. 2026-03-01.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this day (included) or before this ISO time.")
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="The report as JSON (as GET /v1/reports/experiments).")
    ] = False,
    csv: Annotated[bool, typer.Option("--csv", help="One row per arm, as CSV.")] = False,
) -> None:
    """Per split: customers and conversions per arm (a purchase within the window after the
    assignment; holdout included), conversion rate with its 95 % Wilson interval, difference
    to the holdout (or the first arm) with its interval and p-value, revenue per customer.
    With CYKLO_GLOBAL_HOLDOUT_PERCENT set: the programme's incremental revenue per customer.
    `cyklo report` prints this beside the journeys' funnels and the lifecycle."""
    from reports.funnel import Period

    one_format(json, csv)
    period = Period.of(day_or_time(since, "--since"), day_or_time(until, "--until"))
    settings = get_settings()
    database = settings.database_url.removeprefix("sqlite:///")
    if settings.database_url.startswith("sqlite:///") and not Path(database).exists():
        typer.echo(f"cyklo report-experiments: no database at {database} (set CYKLO_DATABASE_URL)", err=True)
        raise typer.Exit(2)
    echo(experiments_section(settings, journey, period), json, csv)
