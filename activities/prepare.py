"""Hands a workflow its journey definition and the customer's time zone.

Run as a local activity: its result is recorded in history, so replays never read the
database and a definition published later cannot change a running journey.
"""

from __future__ import annotations

from sqlmodel import select
from temporalio import activity

from settings import Settings
from storage import journey_versions
from storage.database import session_for
from storage.models import Customer
from workflows.interface import PreparedJourney, PrepareRequest


class JourneyPreparation:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="prepare_journey")
    def prepare_journey(self, request: PrepareRequest) -> PreparedJourney:
        url = self.settings.database_url
        with session_for(url, read_only=True) as session:
            version = request.version or journey_versions.newest_version(session, request.journey_id)
            timezone = session.exec(
                select(Customer.timezone).where(Customer.id == request.customer_id)
            ).first()
        definition_json = journey_versions.published(url, request.journey_id, version).definition
        if timezone is None:
            from definition.model import Journey

            timezone = Journey.model_validate_json(definition_json).default_timezone
        return PreparedJourney(version=version, definition_json=definition_json, timezone=timezone)
