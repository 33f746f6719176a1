"""`cyklo report-lifecycle`: the lifecycle section of `cyklo report` alone, as readable
tables, JSON or CSV."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.report import day_or_time, echo, lifecycle_section, one_format
from settings import get_settings


def report_lifecycle(
    since: Annotated[
        str | None,
        typer.Option(
            help="From this day (UTC) or ISO time, e.g. 2026-03-01 (default: a year before --until)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this day (included) or before this ISO time (default: now).")
    ] = None,
    weekly: Annotated[
        bool, typer.Option("--weekly", help="Stage flows per ISO week instead of per month.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="The report as JSON (as the API serves it).")
    ] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="The report as CSV: section, journey, bucket, name, value.")
    ] = False,
) -> None:
    """Lifecycle KPIs: customers per stage now (from Temporal), stage flows, retention and
    churn, cohorts by sign-up month, CLV, average order value, repeat purchases, NPS and CAC.
    `cyklo report` prints this beside the journeys' funnels and the experiments."""
    from reports.funnel import Period
    from storage.database import migrate

    one_format(as_json, as_csv)
    # Days as `cyklo report` reads them: an --until day is included whole.
    asked = Period.of(day_or_time(since, "--since"), day_or_time(until, "--until"))
    settings = get_settings()
    migrate(settings.database_url)
    echo(lifecycle_section(settings, None, asked, weekly=weekly), as_json, as_csv)
