"""Publishing journey files: validate them, then freeze each as a numbered version.

Publishing is an explicit act (`cyklo publish`, `cyklo rollback`, `cyklo dev` watching its
folder): the worker and the API run what is published, and publish at start only when
CYKLO_PUBLISH_ON_START says so (a single-box install that deploys files and restarts).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from definition.adoption import unmapped_stages
from definition.changes import changes
from definition.loader import JourneyProblems, LoadedJourney, load_journeys_or_raise
from definition.model import Journey
from definition.problems import Problem
from definition.yaml_source import compose_yaml, key_line
from settings import Settings
from storage import journey_versions
from storage.database import migrate, session_for


@dataclass(frozen=True)
class Published:
    journey_id: str
    version: int
    previous: int | None
    """The newest version before this publish; equal to `version` when nothing changed."""
    changes: list[str]
    """What the version changed against `previous` (definition.changes); empty if nothing."""

    new_entry_rules: bool = False
    """A new journey, or new `entry` rules: what an API reads only when it starts."""

    def summary(self) -> str:
        """`lifecycle: v3 (was v2)` with a line per change, or `lifecycle: v2, unchanged`."""
        if self.previous == self.version:
            return f"{self.journey_id}: v{self.version}, unchanged"
        was = f" (was v{self.previous})" if self.previous is not None else ""
        return "\n".join(
            [f"{self.journey_id}: v{self.version}{was}", *(f"  {line}" for line in self.changes)]
        )


def publish(settings: Settings, paths: list[Path]) -> list[Published]:
    """Validate every journey in `paths` (JourneyProblems if any has a problem: then nothing
    is published) and publish each whose content differs from its newest version."""
    loaded = load_journeys_or_raise(paths)
    migrate(settings.database_url)
    _refuse_lost_stages(settings, loaded)
    return [_publish_one(settings, journey, git_commit(journey.path)) for journey in loaded]


@dataclass(frozen=True)
class Planned:
    """What `cyklo publish` would do to one journey (`cyklo publish --plan`)."""

    journey_id: str
    newest: int | None
    """The newest published version (None: never published)."""
    next_version: int | None
    """The version publishing would freeze; None when the files hold the newest content."""
    changes: list[str]
    definition: Journey
    published: dict[int, Journey]
    """Every published version's definition: the stages running customers may be in."""


def plan(settings: Settings, paths: list[Path]) -> list[Planned]:
    """Validate as `publish` does (JourneyProblems, lost stages included) and publish nothing."""
    loaded = load_journeys_or_raise(paths)
    migrate(settings.database_url)
    _refuse_lost_stages(settings, loaded)
    planned = []
    with session_for(settings.database_url, read_only=True) as session:
        for journey in loaded:
            journey_id = journey.definition.journey
            try:
                rows = journey_versions.history(session, journey_id)
            except journey_versions.JourneyNotPublished:
                rows = []
            newest = rows[-1] if rows else None
            after = Content(journey.definition.model_dump_json(by_alias=True), journey.templates)
            unchanged = newest is not None and newest.content_hash == journey.content_hash
            found = [] if unchanged else changes(
                newest.definition if newest else None, dict(newest.templates) if newest else {}, after.definition, after.templates
            )
            planned.append(
                Planned(
                    journey_id=journey_id,
                    newest=newest.version if newest else None,
                    next_version=None if unchanged else (newest.version + 1 if newest else 1),
                    changes=found,
                    definition=journey.definition,
                    published={row.version: Journey.model_validate_json(row.definition) for row in rows},
                )
            )
    return planned


def newest_published(settings: Settings, journey_id: str) -> tuple[int, Journey] | None:
    """The newest published version of a journey and its definition; None if never published."""
    with session_for(settings.database_url, read_only=True) as session:
        try:
            row = journey_versions.get(session, journey_id)
        except journey_versions.JourneyNotPublished:
            return None
        return row.version, Journey.model_validate_json(row.definition)


def _refuse_lost_stages(settings: Settings, loaded: list[LoadedJourney]) -> None:
    """A stage of the newest version that a new version neither keeps nor maps: its customers
    would be left where the journey no longer goes, so nothing is published."""
    problems = []
    for journey in loaded:
        newest = newest_published(settings, journey.definition.journey)
        if newest is None:
            continue
        version, before = newest
        for stage in unmapped_stages(before, journey.definition):
            problems.append(
                Problem(
                    journey.path,
                    key_line(compose_yaml(journey.path.read_text(encoding="utf-8")), ("stages",)),
                    f"stage {stage!r} of version {version} is gone and customers may be in it: say where they go "
                    f"with `renamed_stages: {{{stage}: NEW_NAME}}` or `removed_stages: {{{stage}: STAGE}}` "
                    f"(or `{{{stage}: exit}}`)",
                )
            )
    if problems:
        raise JourneyProblems(problems)


def publish_journeys(settings: Settings, paths: list[Path]) -> dict[str, int]:
    """Version of every journey found; unchanged files keep their version number."""
    return {published.journey_id: published.version for published in publish(settings, paths)}


def newest_versions(settings: Settings) -> dict[str, int]:
    """The newest published version of every journey: what new customers start on."""
    with session_for(settings.database_url, read_only=True) as session:
        return {
            journey_id: journey_versions.newest_version(session, journey_id)
            for journey_id in journey_versions.published_ids(session)
        }


def _publish_one(settings: Settings, journey: LoadedJourney, commit: str | None) -> Published:
    journey_id = journey.definition.journey
    content = Content(journey.definition.model_dump_json(by_alias=True), journey.templates)
    with session_for(settings.database_url) as session:
        try:
            newest = journey_versions.get(session, journey_id)
            before: tuple[int | None, Content | None] = (
                newest.version,
                Content(newest.definition, dict(newest.templates)),
            )
        except journey_versions.JourneyNotPublished:
            before = (None, None)
        version = journey_versions.publish(
            session, journey_id, journey.content_hash, content.definition, content.templates, git_commit=commit
        )
    return _published(journey_id, version, *before, content)


def rollback(settings: Settings, journey_id: str, version: int) -> Published:
    """Publish version `version`'s content again, as the newest version."""
    migrate(settings.database_url)
    with session_for(settings.database_url) as session:
        old = journey_versions.get(session, journey_id, version)
        newest = journey_versions.get(session, journey_id)
        number = journey_versions.publish(
            session,
            journey_id,
            old.content_hash,
            old.definition,
            dict(old.templates),
            git_commit=old.git_commit,
        )
        return _published(
            journey_id,
            number,
            newest.version,
            Content(newest.definition, dict(newest.templates)),
            Content(old.definition, dict(old.templates)),
        )


@dataclass(frozen=True)
class Content:
    definition: str
    """JSON, as published."""
    templates: dict[str, str]


def _published(
    journey_id: str, version: int, previous: int | None, before: Content | None, after: Content
) -> Published:
    if version == previous:
        return Published(journey_id, version, previous, [])
    old_definition, old_templates = (before.definition, before.templates) if before else (None, {})
    found = changes(old_definition, old_templates, after.definition, after.templates)
    entry_rules = before is None or json.loads(before.definition)["entry"] != json.loads(after.definition)["entry"]
    return Published(journey_id, version, previous, found, entry_rules)


def diff(settings: Settings, journey_id: str, old: int, new: int) -> list[str]:
    with session_for(settings.database_url, read_only=True) as session:
        before = journey_versions.get(session, journey_id, old)
        after = journey_versions.get(session, journey_id, new)
        return changes(before.definition, dict(before.templates), after.definition, dict(after.templates))


def git_commit(path: Path) -> str | None:
    """The commit checked out in the git tree holding `path`; None outside one (or without git)."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=path.resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = found.stdout.strip()
    return commit if found.returncode == 0 and len(commit) == 40 else None


def report(settings: Settings, paths: list[Path]) -> str:
    """Publish and say what happened, or why nothing was published: what `cyklo dev` prints."""
    try:
        return "\n".join(published.summary() for published in publish(settings, paths))
    except JourneyProblems as problems:
        return "\n".join(
            [
                "journeys not published, fix these first:",
                *(f"  {line}" for line in str(problems).splitlines()),
            ]
        )


def files_state(folder: Path) -> dict[Path, tuple[float, int]]:
    """Modification time and size of every file under the journeys folder: what `cyklo dev`
    polls (no file-watching library needed for a folder a person edits)."""
    if not folder.is_dir():
        return {}
    state = {}
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                state[path] = (stat.st_mtime, stat.st_size)
        except OSError:
            continue  # an editor's swap file gone between listing and reading
    return state


async def watch(
    settings: Settings,
    folder: Path,
    announce: Callable[[str], None],
    on_published: Callable[[], None],
    interval: float = 1.0,
) -> None:
    """Publish `folder` again whenever a file in it changes, until cancelled."""
    seen = await asyncio.to_thread(files_state, folder)
    while True:
        await asyncio.sleep(interval)
        now = await asyncio.to_thread(files_state, folder)
        if now == seen:
            continue
        seen = now
        announce(await asyncio.to_thread(report, settings, [folder]))
        on_published()
