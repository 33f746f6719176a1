"""`cyklo validate`: every problem of the journey files and templates, as `file:line: message`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from definition.loader import load_journeys_or_raise
from settings import get_settings


def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Journey files or folders (default: the journeys folder, CYKLO_JOURNEYS_DIR)."),
    ] = None,
) -> None:
    """Check journey files and the templates they use; exit 1 if anything needs fixing."""
    targets = paths or [get_settings().journeys_dir]
    missing = [path for path in targets if not path.exists()]
    for path in missing:
        typer.echo(f"cyklo validate: {path}: no such file or folder", err=True)
    if missing:
        raise typer.Exit(2)
    # Problems raise JourneyProblems: the command guard prints one line each and exits 1.
    loaded = load_journeys_or_raise(targets)
    # Journeys in one folder share its layouts: count each template file once.
    template_files = {
        journey.path.parent / "templates" / name for journey in loaded for name in journey.templates
    }
    names = ", ".join(journey.definition.journey for journey in loaded)
    plural = "journey" if len(loaded) == 1 else "journeys"
    typer.echo(f"ok: {len(loaded)} {plural} ({names}), {len(template_files)} templates")
