"""`cyklo test`: simulate every journey test scenario and check what it expects, so a shop's
CI can gate `cyklo publish` on it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.simulate import journey_paths, template_failure_summary
from definition.loader import load_journeys_or_raise
from definition.problems import shown
from settings import get_settings


def test(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Scenario files or folders of them (default: the journeys folder's tests/)."),
    ] = None,
    journeys: Annotated[
        list[Path] | None,
        typer.Option("--journeys", "-j", help="Journey files or folders (default: the journeys folder)."),
    ] = None,
) -> None:
    """Simulate each scenario and check its `expect:`; exit 1 if any expectation is unmet or a
    message failed with a template error, 2 if a scenario file is wrong."""
    from simulation.expectations import name_problems, template_failures, unmet
    from simulation.runner import simulate
    from simulation.scenario import Scenario, ScenarioError, load_scenario

    files, problems = _scenario_files(paths or [get_settings().journeys_dir / "tests"])
    targets = journey_paths(journeys)
    # Journey problems raise JourneyProblems: the command guard prints them and exits 1.
    definitions = [journey.definition for journey in load_journeys_or_raise(targets)]
    scenarios: list[tuple[Path, Scenario]] = []
    for file in files:
        try:
            scenario = load_scenario(file)
        except ScenarioError as error:
            problems += error.problems
            continue
        if scenario.expect is not None:
            problems += name_problems(file, scenario.expect, definitions)
        scenarios.append((file, scenario))
    if problems:
        # Every scenario is checked before any runs: a typo must not wait minutes to be told.
        for line in problems:
            typer.echo(line, err=True)
        raise typer.Exit(2)

    failed = 0
    for file, scenario in scenarios:
        started = time.monotonic()
        result = asyncio.run(simulate(targets, scenario))
        lines = unmet(scenario.expect, result.timeline) if scenario.expect else []
        broken = template_failures(result.timeline)
        if broken:
            lines.append(template_failure_summary(broken))
        entered = ", ".join(sorted(result.journeys)) or "no journey entered"
        verdict = "FAIL" if lines else "ok  "
        typer.echo(f"{verdict} {shown(file)} ({entered}) {time.monotonic() - started:.0f}s")
        for line in lines:
            typer.echo(f"       {line}")
        failed += bool(lines)
    plural = "scenario" if len(scenarios) == 1 else "scenarios"
    typer.echo(f"{len(scenarios)} {plural}: {len(scenarios) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _scenario_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Scenario files named, and those directly in the folders named; a problem per path that
    is not there and when there is nothing to run."""
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{shown(path)}: no such file or folder")
    if not files and not problems:
        problems.append(f"{', '.join(map(shown, paths))}: no scenario files (*.yaml, *.yml)")
    return files, problems
