"""Publishing journey files: validate them, then freeze each as a numbered version."""

from __future__ import annotations

from pathlib import Path

from definition.loader import load_journeys_or_raise
from settings import Settings
from storage import journey_versions
from storage.database import migrate, session_for


def publish_journeys(settings: Settings, paths: list[Path]) -> dict[str, int]:
    """Version of every journey found; unchanged files keep their version number."""
    loaded = load_journeys_or_raise(paths)
    migrate(settings.database_url)
    versions = {}
    with session_for(settings.database_url) as session:
        for journey in loaded:
            versions[journey.definition.journey] = journey_versions.publish(
                session,
                journey.definition.journey,
                journey.content_hash,
                journey.definition.model_dump_json(by_alias=True),
                journey.templates,
            )
    return versions
