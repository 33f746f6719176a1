"""`cyklo simulate`: what a customer would receive, before anything is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import json_text
from settings import get_settings

if TYPE_CHECKING:
    from simulation.runner import TimelineEntry

JourneysArgument = Annotated[
    list[Path] | None, typer.Argument(help="Journey files or folders (default: the journeys folder).")
]


def journey_paths(journeys: list[Path] | None) -> list[Path]:
    """The journeys a simulation runs: those named, or the journeys folder (CYKLO_JOURNEYS_DIR)."""
    return journeys or [get_settings().journeys_dir]


def template_failure_summary(broken: list[TimelineEntry]) -> str:
    messages = ", ".join(f"{entry.journey} {entry.channel} {entry.template}" for entry in broken)
    plural = "message" if len(broken) == 1 else "messages"
    return f"{len(broken)} {plural} failed with a template error: {messages}"


def simulate(
    journeys: JourneysArgument = None,
    scenario: Annotated[
        Path, typer.Option("--scenario", "-s", help="Scenario YAML: customer, start, events, until.")
    ] = ...,  # type: ignore[assignment]
    as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
) -> None:
    """Simulate journeys for one customer on the time-skipping Temporal server; exit 1 if a
    message failed with a template error."""
    from simulation.expectations import template_failures
    from simulation.report import as_text
    from simulation.runner import simulate as run_simulation
    from simulation.scenario import load_scenario

    loaded = load_scenario(scenario)
    result = asyncio.run(run_simulation(journey_paths(journeys), loaded))
    typer.echo(json_text(result.timeline) if as_json else as_text(result.timeline, result.funnels))
    broken = template_failures(result.timeline)
    if broken:
        typer.echo(f"cyklo simulate: {template_failure_summary(broken)}", err=True)
        raise typer.Exit(1)
