"""Published journey versions: a running customer keeps the version they entered with."""

from __future__ import annotations

from functools import lru_cache

from sqlmodel import Session, col, func, select

from storage.database import session_for
from storage.models import JourneyVersion


class JourneyNotPublished(LookupError):
    pass


def publish(
    session: Session, journey_id: str, content_hash: str, definition_json: str, templates: dict[str, str]
) -> int:
    """The version number for this content: the existing one if unchanged, else the next."""
    existing = session.exec(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id, JourneyVersion.content_hash == content_hash
        )
    ).first()
    if existing is not None:
        return existing.version
    newest = session.exec(
        select(func.max(JourneyVersion.version)).where(JourneyVersion.journey_id == journey_id)
    ).one()
    row = JourneyVersion(
        journey_id=journey_id,
        version=(newest or 0) + 1,
        content_hash=content_hash,
        definition=definition_json,
        templates=templates,
    )
    session.add(row)
    session.commit()
    return row.version


def get(session: Session, journey_id: str, version: int | None = None) -> JourneyVersion:
    """A given version, or the newest one when `version` is None."""
    query = select(JourneyVersion).where(JourneyVersion.journey_id == journey_id)
    if version is not None:
        query = query.where(JourneyVersion.version == version)
    row = session.exec(query.order_by(col(JourneyVersion.version).desc())).first()
    if row is None:
        raise _not_published(journey_id, version)
    return row


def _not_published(journey_id: str, version: int | None) -> JourneyNotPublished:
    wanted = f"version {version} of " if version is not None else ""
    return JourneyNotPublished(
        f"{wanted}journey {journey_id!r} is not published: run the worker or `cyklo publish`"
    )


def newest_version(session: Session, journey_id: str) -> int:
    """The number of the newest published version (reads no definition, no templates)."""
    version = session.exec(
        select(func.max(JourneyVersion.version)).where(JourneyVersion.journey_id == journey_id)
    ).one()
    if version is None:
        raise _not_published(journey_id, None)
    return int(version)


@lru_cache(maxsize=64)
def published(database_url: str, journey_id: str, version: int) -> JourneyVersion:
    """A published version, read once per process: published versions never change."""
    with session_for(database_url, read_only=True) as session:
        return get(session, journey_id, version)


def published_ids(session: Session) -> list[str]:
    return sorted(set(session.exec(select(JourneyVersion.journey_id)).all()))


def newest_definitions(session: Session) -> list[str]:
    """The newest published definition (JSON) of every journey: what new events are routed by."""
    return [get(session, journey_id).definition for journey_id in published_ids(session)]
