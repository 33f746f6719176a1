"""`cyklo validate`: every problem of the journey files and templates, as `file:line: message`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from definition.loader import JourneyProblems, load_journeys_or_raise
from settings import get_settings


def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Journey files or folders (default: journeys/).")
    ] = None,
) -> None:
    """Check journey files and their templates."""
    loaded = load_journeys_or_raise(paths or [get_settings().journeys_dir])
    templates = sum(len(journey.templates) for journey in loaded)
    names = ", ".join(journey.definition.journey for journey in loaded)
    typer.echo(f"ok: {len(loaded)} journeys ({names}), {templates} templates")


__all__ = ["validate", "JourneyProblems"]
