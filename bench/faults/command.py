"""`cyklo faults`: the fault suite (bench/faults/) on a stack it starts itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer


def faults(
    customers: Annotated[
        int, typer.Option(help="Customers of the load, spread over the event patterns.", min=1)
    ] = 300,
    kills: Annotated[
        int, typer.Option(help="Times the worker is killed (kill -9) and restarted.", min=0)
    ] = 20,
    temporal_restarts: Annotated[int, typer.Option(help="Restarts of the Temporal dev server.", min=0)] = 1,
    database_outage: Annotated[
        float, typer.Option(help="Seconds PostgreSQL is unreachable (0: no outage).", min=0)
    ] = 10.0,
    storm: Annotated[
        int, typer.Option(help="Requests answered 429, 500, 503 in each storm (0: none).", min=0)
    ] = 40,
    held: Annotated[
        float, typer.Option(help="Seconds replies are held, below the provider timeout (0: never).", min=0)
    ] = 3.0,
    timeouts: Annotated[
        int, typer.Option(help="Times replies are held past the provider timeout.", min=0)
    ] = 1,
    rate: Annotated[float, typer.Option(help="Events a second the shop sends.", min=0.1)] = 3.0,
    settle: Annotated[
        float, typer.Option(help="Seconds a round may take to settle before the run goes on.", min=10)
    ] = 300.0,
    seed: Annotated[
        int | None, typer.Option(help="The fault schedule's seed (default: a new one, printed).")
    ] = None,
    journeys: Annotated[Path, typer.Option(help="Journey folder.")] = Path("journeys"),
    postgres_url: Annotated[
        str, typer.Option(help="PostgreSQL to create the run's own database on (dropped afterwards).")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    output: Annotated[Path, typer.Option(help="Where the JSON goes.")] = Path("faults-results.json"),
    keep: Annotated[
        bool,
        typer.Option(
            help="Keep the temporary folder (logs, Temporal's database) and the PostgreSQL database."
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Fail on sends of unknown outcome too (what at-most-once allows).")
    ] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown.")] = False,
) -> None:
    """Kill the worker, restart Temporal, cut the database off and make the providers fail
    under a load of sign-ups and purchases; then check every customer's ledger against the
    simulation. Exits 1 if anything was lost, duplicated, wrongly recorded or wedged (with
    --strict also if a send's outcome was unknown)."""
    from rich.console import Console

    try:
        from bench.faults.report import markdown, table
        from bench.faults.run import Options, run_faults
    except ModuleNotFoundError as missing:
        raise typer.BadParameter(
            f"{missing.name} is not installed: the fault suite needs pip install -e '.[bench]' (or scripts/faults)"
        ) from None
    if not journeys.is_dir():
        raise typer.BadParameter(f"{journeys} is not a folder", param_hint="--journeys")
    options = Options(
        customers=customers,
        kills=kills,
        temporal_restarts=temporal_restarts,
        database_outage_seconds=database_outage,
        storm=storm,
        held_seconds=held,
        timeouts=timeouts,
        rate=rate,
        settle_seconds=settle,
        seed=seed,
        journeys=journeys,
        postgres_url=postgres_url,
        output=output,
        keep=keep,
        strict=strict,
    )
    console = Console(stderr=True)
    results = asyncio.run(run_faults(options, console.print))
    output.write_text(json.dumps(results, indent=2) + "\n")
    if as_markdown:
        typer.echo(markdown(results))
    else:
        Console(width=150).print(table(results))
    for problem in results["counts"]["problems"][:20]:
        typer.echo(f"  {problem}")
    typer.echo(f"figures written to {output}")
    if results["failures"]:
        raise typer.Exit(1)
