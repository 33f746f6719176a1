"""`cyklo report`: what each journey and step earns, from the database's tables."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import typer

from settings import get_settings


def report(
    journey: Annotated[
        str | None, typer.Option(help="One journey (default: every journey with messages).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Messages sent from this day (UTC) or ISO time, e.g. 2026-03-01.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Messages sent up to this day (included) or before this ISO time.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print one CSV row per journey step.")] = False,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="First recompute every conversion from the ledger and the events."),
    ] = False,
) -> None:
    """Per journey and step for a period: sent, delivered, opened, clicked, bounced, converted,
    conversion rate, revenue, unsubscribed, and what was not sent and why."""
    from reports.funnel import Period, journeys_report
    from storage import conversions
    from storage.database import migrate, session_for

    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--json/--csv")
    settings = get_settings()
    migrate(settings.database_url)
    if rebuild:
        with session_for(settings.database_url) as session:
            credited = conversions.rebuild(session)
        typer.echo(f"conversions rebuilt: {credited} purchases credited", err=True)
    period = Period.of(day_or_time(since, "--since"), day_or_time(until, "--until"))
    with session_for(settings.database_url, read_only=True) as session:
        result = journeys_report(session, journey, period, settings.currency)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    elif as_csv:
        typer.echo(result.as_csv(), nl=False)
    else:
        typer.echo(result.as_text())


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
