"""`cyklo reconcile`: settle messages recorded `failed (outcome unknown)` from the providers' records."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from definition.durations import format_duration, parse_duration
from settings import get_settings

if TYPE_CHECKING:
    from reconciliation import Settlement


def reconcile(
    since: Annotated[str, typer.Option(help="How far back to look, e.g. 2d, 12h, 1w.")] = "2d",
) -> None:
    """Ask the providers what became of messages whose send got no answer: SMS from Twilio's
    message list; email only through SendGrid's webhooks. Prints what was settled and what not."""
    from reconciliation import ReconcileError
    from reconciliation import reconcile as settle

    try:
        window = parse_duration(since)
    except ValueError as problem:
        raise typer.BadParameter(str(problem), param_hint="--since") from None
    settings = get_settings()
    database = settings.database_url.removeprefix("sqlite:///")
    if settings.database_url.startswith("sqlite:///") and not Path(database).exists():
        typer.echo(f"cyklo reconcile: no database at {database} (set CYKLO_DATABASE_URL)", err=True)
        raise typer.Exit(2)
    try:
        results = settle(settings, window)
    except ReconcileError as problem:
        typer.echo(f"cyklo reconcile: {problem}", err=True)
        raise typer.Exit(2) from None
    typer.echo(table(results, window))


def table(results: list[Settlement], window: timedelta) -> str:
    scope = f"failed (outcome unknown) in the last {format_duration(window)}"
    if not results:
        return f"no messages {scope}: nothing to settle"
    rows = [("message", "customer", "channel", "template", "sent (UTC)", "result")] + [
        (
            str(result.message_id),
            result.customer_id,
            result.channel,
            result.template,
            result.sent_at.strftime("%Y-%m-%d %H:%M"),
            result.note,
        )
        for result in results
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5]
        for row in rows
    ]
    settled = sum(result.settled for result in results)
    count = f"{len(results)} message{'' if len(results) == 1 else 's'}"
    lines.append(f"{count} {scope}: {settled} settled, {len(results) - settled} still unknown")
    return "\n".join(lines)
