"""Events from the shop: validated, recorded once, and sent to every journey that listens.

An entry event (e.g. signed_up) starts the customer's journey if it is not running
(signal-with-start); other events only reach journeys already running.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from definition.model import Journey
from settings import Settings
from storage.database import session_for
from storage.models import Event
from workflows.interface import JourneyEvent, JourneyInput, workflow_id
from workflows.journey import CUSTOMER_ID, JOURNEY_ID, JourneyWorkflow

PERSONAL_KEYS = frozenset(
    {
        "email",
        "phone",
        "name",
        "first_name",
        "last_name",
        "full_name",
        "address",
        "street",
        "postcode",
        "zip",
        "ip",
    }
)
"""Event properties reach workflow history, which must hold no personal data."""

Routing = Literal["accepted", "duplicate"]


class IncomingEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(default_factory=lambda: f"ev-{uuid.uuid4()}", min_length=1, max_length=200)
    customer_id: str = Field(min_length=1, max_length=128)
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=100)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    properties: dict[str, Any] = {}

    @field_validator("properties")
    @classmethod
    def _purchase_amount(cls, properties: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Order value drives points and the VIP threshold: a purchase must state it in numbers.
        if info.data.get("type") != "purchase":
            return properties
        amount = properties.get("amount")
        if isinstance(amount, str):
            try:
                amount = float(amount)
            except ValueError:
                raise ValueError(f"amount {amount!r} is not a number") from None
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise ValueError("a purchase needs properties.amount, a number of 0 or more")
        return {**properties, "amount": float(amount)}

    @field_validator("properties")
    @classmethod
    def _no_personal_data(cls, properties: dict[str, Any]) -> dict[str, Any]:
        found = sorted(_personal_keys(properties))
        if found:
            raise ValueError(
                f"personal data not allowed in event properties: {', '.join(found)} "
                "(send it with the customer profile instead)"
            )
        return properties


def _personal_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {key for key in value if str(key).lower() in PERSONAL_KEYS}
        for item in value.values():
            found |= _personal_keys(item)
        return found
    if isinstance(value, list):
        return set().union(*(_personal_keys(item) for item in value)) if value else set()
    return set()


class EventRouter:
    def __init__(self, client: Client, settings: Settings, journeys: list[Journey]) -> None:
        self.client = client
        self.settings = settings
        self.journeys = journeys

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
            # Not delivered means not accepted: forget the event so the shop's retry routes it.
            await asyncio.to_thread(self._forget, event)
            raise
        return "accepted"

    @property
    def _rpc_timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.temporal_rpc_timeout_seconds)

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
            if event.type in journey.entry_event_types():
                await self._signal_with_start(journey.journey, event.customer_id, payload, clock_offset)
            else:
                await self._signal_running(journey.journey, event.customer_id, payload)

    def _forget(self, event: IncomingEvent) -> None:
        with session_for(self.settings.database_url) as session:
            recorded = session.get(Event, event.event_id)
            if recorded is not None:
                session.delete(recorded)
                session.commit()

    def _record(self, event: IncomingEvent) -> bool:
        with session_for(self.settings.database_url) as session:
            session.add(
                Event(
                    event_id=event.event_id,
                    customer_id=event.customer_id,
                    type=event.type,
                    occurred_at=event.occurred_at,
                    properties=event.properties,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                return False
        return True

    async def _signal_with_start(
        self, journey_id: str, customer_id: str, event: JourneyEvent, clock_offset: Any
    ) -> None:
        extra = {"clock_offset": clock_offset} if clock_offset is not None else {}
        await self.client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(
                journey_id=journey_id,
                customer_id=customer_id,
                events_per_run=self.settings.events_per_run,
                **extra,
            ),
            id=workflow_id(journey_id, customer_id),
            task_queue=self.settings.task_queue,
            start_signal="event",
            start_signal_args=[event],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            rpc_timeout=self._rpc_timeout,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(CUSTOMER_ID, customer_id), SearchAttributePair(JOURNEY_ID, journey_id)]
            ),
        )

    async def _signal_running(self, journey_id: str, customer_id: str, event: JourneyEvent) -> None:
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(
            workflow_id(journey_id, customer_id)
        )
        try:
            await handle.signal("event", event, rpc_timeout=self._rpc_timeout)
        except RPCError as error:
            # No journey running for this customer: the event matters to it only once entered.
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
