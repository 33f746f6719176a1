"""Events from the shop: validated, recorded once, and sent to every journey that listens.

An entry event (e.g. signed_up) starts the customer's journey if it is not running
(signal-with-start); other events only reach journeys already running.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import phonenumbers
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from temporalio.client import Client

from definition.events import (
    EARLIEST_EVENT,
    EVENT_TYPE_PATTERN,
    LATEST_EVENT,
    MAX_EVENT_TYPE_LENGTH,
    EventType,
    PropertyProblem,
    ValueKind,
    checked_properties,
    declared,
)
from definition.identifiers import EMAIL_ADDRESS, EventId, Identifier
from definition.model import Journey
from settings import Settings, get_settings
from storage import conversions
from storage.database import session_for
from storage.models import Conversion, Event
from workflows.handle import Journeys
from workflows.interface import JourneyEvent, JourneyInput

Routing = Literal["accepted", "duplicate"]

log = logging.getLogger(__name__)


class IncomingEvent(BaseModel):
    """An event as the shop sends it. Everything here may reach workflow history, so every
    field has a rule and properties are only those the event vocabulary declares."""

    model_config = ConfigDict(extra="forbid")

    event_id: EventId = Field(default_factory=lambda: f"ev-{uuid.uuid4()}")
    customer_id: Identifier
    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=MAX_EVENT_TYPE_LENGTH)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    # Validated when left out too: a purchase without properties has no amount.
    properties: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @field_validator("type")
    @classmethod
    def _not_reserved(cls, event_type: str) -> str:
        if event_type == EventType.IMPORTED:
            raise ValueError(
                "`imported` is reserved for `cyklo import start`, which sends it once per customer"
            )
        return event_type

    @field_validator("occurred_at")
    @classmethod
    def _plausible_time(cls, occurred_at: datetime) -> datetime:
        if not EARLIEST_EVENT <= occurred_at <= LATEST_EVENT:
            raise ValueError(f"a time between {EARLIEST_EVENT.year} and {LATEST_EVENT.year}")
        return occurred_at

    @field_validator("properties")
    @classmethod
    def _declared_properties(cls, properties: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        event_type = info.data.get("type")
        if event_type is None:
            return properties  # the type was refused: its own error says why
        normalised, problems = checked_properties(event_type, properties)
        spec = declared(event_type)
        region = get_settings().default_phone_region
        for name, value in normalised.items():
            if spec[name].kind == ValueKind.TEXT and isinstance(value, str):
                problem = personal_data_in(value, region)
                if problem is not None:
                    problems.append(PropertyProblem(name, problem))
        if problems:
            raise ValidationError.from_exception_data(
                "properties",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("event_property", "{message}", {"message": problem.message}),
                        loc=(problem.name,) if problem.name else (),
                        input=None,
                    )
                    for problem in problems
                ],
            )
        return normalised

    def row(self) -> Event:
        """The event as the events table keeps it."""
        return Event(
            event_id=self.event_id,
            customer_id=self.customer_id,
            type=self.type,
            occurred_at=self.occurred_at,
            properties=self.properties,
        )


def personal_data_in(text: str, region: str) -> str | None:
    """Why `text` looks like personal data, or None. Catches the common shapes, not every one:
    the positive rule on property names is the main guard."""
    if EMAIL_ADDRESS.search(text):
        return "looks like an email address: personal data belongs in the customer profile, not in events"
    if next(iter(phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)), None):
        return "looks like a phone number: personal data belongs in the customer profile, not in events"
    return None


class EventRouter:
    def __init__(self, client: Client, settings: Settings, journeys: list[Journey]) -> None:
        self.client = client
        self.settings = settings
        self.journeys = journeys
        self.handles = Journeys(client, timedelta(seconds=settings.temporal_rpc_timeout_seconds))

    async def route(
        self, event: IncomingEvent, *, clock_offset: Any = None, budget: float | None = None
    ) -> Routing:
        """Record and deliver within `budget` seconds (default CYKLO_EVENT_BUDGET), or raise.

        A delivery cut short may still have reached a journey; the shop's retry is then a
        repeat the workflow drops by event id, so forgetting the event loses nothing.
        """
        if not await asyncio.to_thread(self._record, event):
            return "duplicate"
        try:
            async with asyncio.timeout(self.settings.event_budget_seconds if budget is None else budget):
                await self._deliver(event, clock_offset)
        except Exception:
            # Not delivered means not accepted: forget the event (and its credit) so the
            # shop's retry routes it.
            await asyncio.to_thread(self._forget, event)
            raise
        return "accepted"

    async def _deliver(self, event: IncomingEvent, clock_offset: Any) -> None:
        payload = JourneyEvent(
            event_id=event.event_id,
            type=event.type,
            occurred_at=event.occurred_at,
            properties=event.properties,
        )
        for journey in self.journeys:
            if event.type not in journey.event_types():
                continue
            handle = self.handles.of(journey.journey, event.customer_id)
            if event.type in journey.entry_event_types():
                extra = {"clock_offset": clock_offset} if clock_offset is not None else {}
                start = JourneyInput(
                    journey_id=journey.journey,
                    customer_id=event.customer_id,
                    events_per_run=self.settings.events_per_run,
                    **extra,
                )
                await handle.enter(payload, start, self.settings.task_queue)
            else:
                await handle.deliver(payload)

    def _record(self, event: IncomingEvent) -> bool:
        """The event, once, and a purchase's credit to the message that converted it, in one
        write transaction: under SQLite's single writer every transaction a purchase takes
        queues behind every other one (docs/benchmarks.md)."""
        with session_for(self.settings.database_url) as session:
            recorded = event.row()
            session.add(recorded)
            try:
                session.flush()
            except IntegrityError:
                return False
            if event.type == EventType.PURCHASE:
                self._credit(session, recorded)
            session.commit()
        return True

    def _credit(self, session: Session, recorded: Event) -> None:
        """The event is recorded whatever happens here: a credit that fails is logged, and
        `cyklo report --rebuild` recomputes it from the ledger and the events."""
        try:
            with session.begin_nested():
                conversions.credit_purchase(session, recorded)
        except Exception as error:
            log.warning(
                "purchase %s accepted but not credited (%s): `cyklo report --rebuild` recomputes it",
                recorded.event_id,
                type(error).__name__,
            )

    def _forget(self, event: IncomingEvent) -> None:
        with session_for(self.settings.database_url) as session:
            session.execute(delete(Conversion).where(col(Conversion.event_id) == event.event_id))
            session.execute(delete(Event).where(col(Event.event_id) == event.event_id))
            session.commit()
