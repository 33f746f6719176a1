"""`cyklo simulate`: what a customer would receive, before anything is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from definition.templates import TEMPLATE_ERROR
from settings import get_settings


def simulate(
    journeys: Annotated[
        list[Path] | None, typer.Argument(help="Journey files or folders (default: the journeys folder).")
    ] = None,
    scenario: Annotated[
        Path, typer.Option("--scenario", "-s", help="Scenario YAML: customer, start, events, until.")
    ] = ...,  # type: ignore[assignment]
    as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
) -> None:
    """Simulate journeys for one customer on the time-skipping Temporal server; exit 1 if a
    message failed with a template error."""
    from simulation.report import as_json as timeline_json
    from simulation.report import as_text
    from simulation.runner import simulate as run_simulation
    from simulation.scenario import load_scenario

    loaded = load_scenario(scenario)
    result = asyncio.run(run_simulation(journeys or [get_settings().journeys_dir], loaded))
    typer.echo(timeline_json(result.timeline) if as_json else as_text(result.timeline))
    broken = [
        entry
        for entry in result.timeline
        if entry.kind == "message"
        and entry.status == "failed"
        and (entry.detail or "").startswith(TEMPLATE_ERROR)
    ]
    if broken:
        # A journey that validates can still fail on data (an event property a template
        # needs and the event lacks): a scenario run in CI must not pass over it.
        messages = ", ".join(f"{entry.journey} {entry.channel} {entry.template}" for entry in broken)
        plural = "message" if len(broken) == 1 else "messages"
        typer.echo(
            f"cyklo simulate: {len(broken)} {plural} failed with a template error: {messages}", err=True
        )
        raise typer.Exit(1)
