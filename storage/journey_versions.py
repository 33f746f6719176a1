"""Published journey versions: frozen by `cyklo publish`; a running customer keeps the version
they entered with."""

from __future__ import annotations

from functools import lru_cache

from sqlmodel import Session, col, func, select

from storage.database import session_for
from storage.models import JourneyVersion


class JourneyNotPublished(LookupError):
    pass


def publish(
    session: Session,
    journey_id: str,
    content_hash: str,
    definition_json: str,
    templates: dict[str, str],
    git_commit: str | None = None,
) -> int:
    """The version number for this content: the newest one if it holds the same content,
    else the next. Content equal to an older version is published again as the newest:
    that is what a rollback (or undoing an edit by hand) asks for."""
    newest = session.exec(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id)
        .order_by(col(JourneyVersion.version).desc())
    ).first()
    if newest is not None and newest.content_hash == content_hash:
        return newest.version
    row = JourneyVersion(
        journey_id=journey_id,
        version=(newest.version if newest is not None else 0) + 1,
        content_hash=content_hash,
        definition=definition_json,
        templates=templates,
        git_commit=git_commit,
    )
    session.add(row)
    session.commit()
    return row.version


def history(session: Session, journey_id: str) -> list[JourneyVersion]:
    """Every published version of the journey, oldest first."""
    rows = session.exec(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id)
        .order_by(col(JourneyVersion.version))
    ).all()
    if not rows:
        raise _not_published(journey_id, None)
    return list(rows)


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
    if version is not None:
        return JourneyNotPublished(
            f"version {version} of journey {journey_id!r} is not published: "
            f"`cyklo versions {journey_id}` lists those that are"
        )
    return JourneyNotPublished(f"journey {journey_id!r} is not published: run `cyklo publish`")


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
