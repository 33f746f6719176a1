"""Hands a workflow its journey definition and the customer's time zone.

Run as a local activity: its result is recorded in history, so replays never read the
database; a version published later reaches a running journey only when the journey asks
for it (`newer_than`, at a stage entry or a support upgrade). At a stage entry it also
records the entry (stage_entries): a retried attempt finds it recorded and goes on.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity

from settings import Settings
from storage import journey_versions
from storage.database import session_for
from storage.models import Customer, StageEntry
from workflows.interface import PreparedJourney, PrepareRequest, StageEntered


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
        definition_json = journey_versions.published(url, request.journey_id, version).definition
        if timezone is None:
            from definition.model import Journey

            timezone = Journey.model_validate_json(definition_json).default_timezone
        return PreparedJourney(version=version, definition_json=definition_json, timezone=timezone)

    def _record(self, journey_id: str, customer_id: str, entered: StageEntered) -> None:
        row = StageEntry(
            journey_id=journey_id,
            customer_id=customer_id,
            instance=entered.instance,
            entry=entered.entry,
            stage=entered.stage,
            previous_stage=entered.previous_stage,
            journey_version=entered.version,
            entered_at=entered.at,
        )
        with session_for(self.settings.database_url) as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # a retried attempt: the entry is recorded already
