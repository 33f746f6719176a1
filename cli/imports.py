"""`cyklo import customers|orders FILE` and `cyklo import start`: an existing customer base,
written straight to the database (CYKLO_DATABASE_URL), then its journeys started through the API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ingestion.imports import BadRow, ImportKind

import_app = typer.Typer(
    help="Import customers and past orders (CSV or JSON lines), then start their journeys.",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="A .csv (with a header) or .jsonl file."),
]


def _import(kind: ImportKind, path: Path) -> None:
    from ingestion.importer import count_rows, import_file
    from ingestion.imports import UnknownFormat, check_format
    from settings import get_settings
    from storage.database import migrate

    try:
        check_format(path)
    except UnknownFormat as error:
        raise typer.BadParameter(str(error), param_hint="FILE") from None
    settings = get_settings()
    migrate(settings.database_url)

    def problem(row: BadRow) -> None:
        # Printed as found, not kept: a file of bad rows stays small in memory.
        typer.echo(f"\r{row.text(str(path))}", err=True)

    with typer.progressbar(length=count_rows(path), label=f"importing {kind}", file=sys.stderr) as bar:
        reached = 0

        def progress(line: int) -> None:
            nonlocal reached
            bar.update(line - reached)
            reached = line

        counts = import_file(
            settings.database_url, kind, path, settings.currency, on_problem=problem, on_progress=progress
        )
    typer.echo(f"{kind}: {counts.loaded} loaded, {counts.unchanged} unchanged, {counts.bad} bad")
    if counts.bad:
        # The good rows are in: exit 1 tells a script there are lines to fix and import again.
        raise typer.Exit(1)


def customers(file: FileArgument) -> None:
    """Load customer profiles with consents (columns: id, email, phone, first_name, locale,
    timezone, signed_up_at, consent_email, consent_sms, consent_source, consent_at; JSON
    lines may nest `consents: {email, sms, source, at}`). A profile already saved the same is
    left unchanged; a bad row is reported as FILE:LINE: field: message and the rest loads."""
    _import(ImportKind.CUSTOMERS, file)


def orders(file: FileArgument) -> None:
    """Load past orders as `purchase` events (columns: order_id, customer_id, amount, currency,
    occurred_at, category). The order id is the event id, so a second import records nothing
    again. History only: no journey hears of them and no message is credited; a journey
    started later counts them in its metrics."""
    _import(ImportKind.ORDERS, file)


def start() -> None:
    """Start the journeys with an `imported: true` entry for every customer with a profile,
    once per customer ever: each enters where its order history puts it, with no welcome.
    Through the API (CYKLO_API_URL, CYKLO_API_KEY with the `import` scope, or the key
    `cyklo dev` made), a thousand customers a request."""
    from cli.platform import _client

    total = {"started": 0, "already": 0, "failed": 0}
    after: str | None = None
    with _client() as cyklo:
        while True:
            answer = cyklo.import_start(after)
            for key in total:
                total[key] += answer[key]
            after = answer.get("next_after")
            if after is None:
                break
    typer.echo(
        f"journeys: {total['started']} customers started, {total['already']} started before, "
        f"{total['failed']} failed"
    )
    if total["failed"]:
        typer.echo(
            "Temporal did not answer for some: run `cyklo import start` again, it sends only those", err=True
        )
        raise typer.Exit(1)
