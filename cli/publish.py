"""`cyklo publish`, `cyklo versions`, `cyklo diff`, `cyklo rollback`: the published versions
of journeys, which the worker and the API run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from settings import Settings, get_settings

T = TypeVar("T")



def publish(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Journey files or folders (default: the journeys folder, CYKLO_JOURNEYS_DIR)."),
    ] = None,
    show_plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Publish nothing: say what would change and what happens to the customers running each journey.",
        ),
    ] = False,
) -> None:
    """Validate the journey files and publish a new version of each that changed, printing
    what changed; nothing is published if any file has a problem (exit 1)."""
    from publishing import publish as publish_files

    targets = paths or [get_settings().journeys_dir]
    missing = [path for path in targets if not path.exists()]
    for path in missing:
        typer.echo(f"cyklo publish: {path}: no such file or folder", err=True)
    if missing:
        raise typer.Exit(2)
    if show_plan:
        _print_plan(get_settings(), targets)
        return
    # Problems raise JourneyProblems: the command guard prints one line each and exits 1.
    published = publish_files(get_settings(), targets)
    for journey in published:
        typer.echo(journey.summary())
    if any(journey.new_entry_rules for journey in published):
        typer.echo("an API already running routes events by the entry rules it read at start: restart it")


def _print_plan(settings: Settings, targets: list[Path]) -> None:
    from definition.adoption import fate
    from publishing import plan
    from visibility import census_or_reason

    for planned in plan(settings, targets):
        if planned.next_version is None:
            typer.echo(f"{planned.journey_id}: unchanged (v{planned.newest}): nothing happens to its customers")
            continue
        was = f" (newest now v{planned.newest})" if planned.newest is not None else ""
        typer.echo(f"{planned.journey_id}: would publish v{planned.next_version}{was}")
        for line in planned.changes:
            typer.echo(f"  {line}")
        if not planned.published:
            continue
        census = asyncio.run(census_or_reason(settings, planned.journey_id, planned.published))
        if isinstance(census, str):
            typer.echo(f"  customers running: unknown ({census})")
            continue
        typer.echo(f"  customers running: {census.running}")
        for (version, stage), count in sorted(census.by_version_and_stage.items()):
            what = fate(stage, version, planned.definition, planned.next_version)
            typer.echo(f"    {count:>7}  v{version} {stage:<14} {what}")
        if census.unplaced:
            typer.echo(
                f"    {census.unplaced:>7}  without a recorded version or stage (started before versions were "
                "recorded, or entering): adopt at their next stage entry like the others"
            )


def versions(
    journey: Annotated[str, typer.Argument(help="The journey id (`journey:` in its file).")],
) -> None:
    """List a journey's published versions: number, time, content hash, git commit, and how
    many customers are running it (from Temporal)."""
    from storage import journey_versions
    from storage.database import migrate, session_for

    settings = get_settings()
    migrate(settings.database_url)
    with session_for(settings.database_url, read_only=True) as session:
        rows = _or_exit(lambda: journey_versions.history(session, journey))
    from definition.model import Journey
    from visibility import census_or_reason

    definitions = {row.version: Journey.model_validate_json(row.definition) for row in rows}
    census = asyncio.run(census_or_reason(settings, journey, definitions))
    first_with_hash: dict[str, int] = {}
    typer.echo(f"{'version':<9}{'published (UTC)':<18}{'hash':<14}{'git commit':<14}{'customers':<11}")
    for row in rows:
        same = first_with_hash.setdefault(row.content_hash, row.version)
        notes = [f"content of v{same}"] if same != row.version else []
        if row is rows[-1]:
            notes.append("newest")
        running = "?" if isinstance(census, str) else str(census.on_version(row.version))
        typer.echo(
            f"{row.version:<9}{row.published_at:%Y-%m-%d %H:%M}  {row.content_hash[:12]:<14}"
            f"{(row.git_commit or '-')[:12]:<14}{running:<11}{', '.join(notes)}".rstrip()
        )
    if isinstance(census, str):
        typer.echo(f"customers running: unknown ({census})")
    elif census.unplaced:
        typer.echo(f"{census.unplaced} more running without a recorded version (started before versions were recorded)")


def diff(
    journey: Annotated[str, typer.Argument(help="The journey id.")],
    old: Annotated[int, typer.Argument(help="The version to compare from.")],
    new: Annotated[int, typer.Argument(help="The version to compare to.")],
) -> None:
    """What changed from one published version of a journey to another."""
    from publishing import diff as version_diff

    settings = get_settings()
    found = _or_exit(lambda: version_diff(settings, journey, old, new))
    typer.echo("\n".join(found) if found else f"{journey}: v{old} and v{new} have the same content")


def rollback(
    journey: Annotated[str, typer.Argument(help="The journey id.")],
    version: Annotated[int, typer.Argument(help="The version whose content is published again.")],
) -> None:
    """Publish an older version's content again as the newest version (the journey files are
    not touched: change them too, or the next `cyklo publish` brings the edit back)."""
    from publishing import rollback as publish_again

    published = _or_exit(lambda: publish_again(get_settings(), journey, version))
    if published.version == published.previous:
        typer.echo(f"{journey}: v{published.version} already has the content of v{version}, unchanged")
        return
    typer.echo(f"{journey}: v{published.version} (was v{published.previous}) has the content of v{version}")
    for line in published.changes:
        typer.echo(f"  {line}")


def _or_exit(read: Callable[[], T]) -> T:
    from storage.journey_versions import JourneyNotPublished

    try:
        return read()
    except JourneyNotPublished as problem:
        typer.echo(f"cyklo: {problem}", err=True)
        raise typer.Exit(1) from None
