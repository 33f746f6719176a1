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

RUNNING_TIMEOUT = 5.0
"""Seconds `cyklo versions` waits for Temporal before listing the versions without counts."""


def publish(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Journey files or folders (default: the journeys folder, CYKLO_JOURNEYS_DIR)."),
    ] = None,
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
    # Problems raise JourneyProblems: the command guard prints one line each and exits 1.
    published = publish_files(get_settings(), targets)
    for journey in published:
        typer.echo(journey.summary())
    if any(journey.new_entry_rules for journey in published):
        typer.echo("an API already running routes events by the entry rules it read at start: restart it")


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
    first_with_hash: dict[str, int] = {}
    typer.echo(f"{'version':<9}{'published (UTC)':<18}{'hash':<14}git commit")
    for row in rows:
        same = first_with_hash.setdefault(row.content_hash, row.version)
        notes = [f"content of v{same}"] if same != row.version else []
        if row is rows[-1]:
            notes.append("newest")
        typer.echo(
            f"{row.version:<9}{row.published_at:%Y-%m-%d %H:%M}  {row.content_hash[:12]:<14}"
            f"{(row.git_commit or '-')[:12]:<14}{', '.join(notes)}".rstrip()
        )
    typer.echo(asyncio.run(_running(settings, journey)))


async def _running(settings: Settings, journey: str) -> str:
    """Customers running the journey. Per version it needs a JourneyVersion search attribute,
    which the workflows do not set yet: the count is of every version together."""
    from api.support import visibility_literal
    from connection import connect

    query = f"JourneyId = '{visibility_literal(journey)}' AND ExecutionStatus = 'Running'"
    try:
        client = await asyncio.wait_for(connect(settings, payloads=False), RUNNING_TIMEOUT)
        count = (await asyncio.wait_for(client.count_workflows(query), RUNNING_TIMEOUT)).count
    except (TimeoutError, OSError) as problem:
        return f"customers running: unknown (Temporal at {settings.temporal_address} did not answer: {problem})"
    except Exception as problem:  # noqa: BLE001 - the versions are worth listing without the count
        # temporalio says a refused connection with a RuntimeError and the transport's dump.
        reason = "no connection" if "Failed client connect" in str(problem) else str(problem)
        return f"customers running: unknown (Temporal at {settings.temporal_address}: {reason})"
    return (
        f"customers running: {count} on all versions together "
        "(per version needs the JourneyVersion search attribute, which workflows do not set yet)"
    )


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
