"""Hands a workflow its journey definition and the customer's time zone.

Run as a local activity: its result is recorded in history, so replays never read the
database; a version published later reaches a running journey only when the journey asks
for it (`newer_than`, at a stage entry or a support upgrade). At a stage entry it also
records the entry (stage_entries): a retried attempt finds it recorded and goes on. A new
enrolment's starting metrics (storage/history.py) come the same way.
"""

from __future__ import annotations

from functools import lru_cache

from sqlmodel import Session, select
from temporalio import activity

from settings import Settings
from storage import history, journey_versions
from storage.database import insert_new, session_for
from storage.models import Customer, StageEntry
from workflows.interface import MetricsSeed, PreparedJourney, PrepareRequest, SeedRequest, StageEntered


class JourneyPreparation:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="prepare_journey")
    def prepare_journey(self, request: PrepareRequest) -> PreparedJourney:
        url = self.settings.database_url
        if request.entered is not None:
            self._record(request.journey_id, request.customer_id, request.entered)
        with session_for(url, read_only=True) as session:
            newest = request.version is None or request.newer_than is not None
            version = (
                journey_versions.newest_version(session, request.journey_id) if newest else request.version
            )
            assert version is not None
            if request.newer_than is not None and version <= request.newer_than:
                return PreparedJourney(version=request.newer_than, definition_json="", timezone="")
            timezone = session.exec(
                select(Customer.timezone).where(Customer.id == request.customer_id)
            ).first()
            seed = self._seed(session, request.customer_id, request.seed) if request.seed else None
        definition_json = journey_versions.published(url, request.journey_id, version).definition
        if timezone is None:
            from definition.model import Journey

            timezone = Journey.model_validate_json(definition_json).default_timezone
        if request.deflated:
            return PreparedJourney(
                version=version,
                definition_json="",
                definition_deflated=_deflated(definition_json),
                timezone=timezone,
                seed=seed,
            )
        return PreparedJourney(version=version, definition_json=definition_json, timezone=timezone, seed=seed)

    @staticmethod
    def _seed(session: Session, customer_id: str, request: SeedRequest) -> MetricsSeed:
        found = history.metrics_of(session, customer_id, request.at, set(request.handled_event_ids))
        return MetricsSeed(metrics=found.metrics, recent_event_ids=found.in_flight)

    def _record(self, journey_id: str, customer_id: str, entered: StageEntered) -> None:
        with session_for(self.settings.database_url) as session:
            record_entries(session, journey_id, customer_id, [entered])
            session.commit()


@lru_cache(maxsize=64)
def _deflated(definition_json: str) -> str:
    """Once per published version: `published` hands out the same text, whose hash is kept."""
    return PreparedJourney.deflate(definition_json)


def record_entries(session: Session, journey_id: str, customer_id: str, entries: list[StageEntered]) -> None:
    """Stage entries into the session's transaction; one a retried attempt recorded already
    is left as it is."""
    rows = [
        StageEntry(
            journey_id=journey_id,
            customer_id=customer_id,
            instance=entered.instance,
            entry=entered.entry,
            stage=entered.stage,
            previous_stage=entered.previous_stage,
            journey_version=entered.version,
            entered_at=entered.at,
        ).model_dump(exclude={"id"})
        for entered in entries
    ]
    if rows:
        insert_new(session, StageEntry, rows)
