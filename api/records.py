"""The support record of one customer: what GET /v1/customers/{id} answers and the support
page shows."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import HTTPException, status
from sqlmodel import col, select

from api.models import CustomerRecord, EventEntry, MessageEntry, ProfileRecord
from settings import Settings
from storage import journey_versions
from storage.database import session_for
from storage.models import Customer, Event, Message
from workflows.handle import Journeys
from workflows.interface import JourneyView

MESSAGES = 100
EVENTS = 50


@dataclass(frozen=True)
class _Rows:
    profile: ProfileRecord | None
    messages: list[MessageEntry]
    events: list[EventEntry]
    journey_ids: list[str]


async def customer_record(settings: Settings, journeys: Journeys, customer_id: str) -> CustomerRecord:
    """Profile, consents, every journey's state, message history and recent events; 404 with
    neither a profile nor an event. Events may come before the profile: the journeys they
    started are shown with no profile. (Erasure deletes both; the ledger rows it keeps do not
    bring a customer back.)"""
    rows = await asyncio.to_thread(_rows, settings, customer_id)
    if rows.profile is None and not rows.events:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id!r}")
    views: dict[str, JourneyView] = {}
    for journey_id in rows.journey_ids:
        view = await journeys.of(journey_id, customer_id).state()
        if view is not None:
            views[journey_id] = view
    return CustomerRecord(profile=rows.profile, messages=rows.messages, events=rows.events, journeys=views)


def _rows(settings: Settings, customer_id: str) -> _Rows:
    with session_for(settings.database_url) as session:
        customer = session.get(Customer, customer_id)
        messages = session.exec(
            select(Message)
            .where(Message.customer_id == customer_id)
            .order_by(col(Message.scheduled_at).desc())
            .limit(MESSAGES)
        ).all()
        events = session.exec(
            select(Event)
            .where(Event.customer_id == customer_id)
            .order_by(col(Event.occurred_at).desc())
            .limit(EVENTS)
        ).all()
        return _Rows(
            profile=None if customer is None else ProfileRecord.model_validate(customer),
            messages=[MessageEntry.model_validate(message) for message in messages],
            events=[EventEntry.model_validate(event) for event in events],
            journey_ids=journey_versions.published_ids(session),
        )
