"""`cyklo simulate`: what a customer would receive, before anything is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

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
    """Simulate journeys for one customer on the time-skipping Temporal server."""
    from simulation.report import as_json as timeline_json
    from simulation.report import as_text
    from simulation.runner import simulate as run_simulation
    from simulation.scenario import load_scenario

    loaded = load_scenario(scenario)
    result = asyncio.run(run_simulation(journeys or [get_settings().journeys_dir], loaded))
    typer.echo(timeline_json(result.timeline) if as_json else as_text(result.timeline))
