"""The one way events and profiles enter cyklo, whatever door they came through: cyklo's own
API, the Segment tracking API, a shop's webhooks or an import all end here."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import ValidationError

from api import errors
from api.errors import FieldError
from api.metrics import count_events
from api.models import EventResult
from definition.identifiers import event_id_problem
from routing.events import EventRouter, IncomingEvent
from settings import Settings
from storage import customers
from storage.customers import CustomerProfile
from storage.database import session_for

ROUTING_CONCURRENCY = 50


async def route_all(router: EventRouter, items: list[Any], budget: float) -> list[EventResult]:
    """Route a batch of raw event items: each is validated, deduplicated within the batch by
    position, and delivered within one deadline for the whole batch."""
    gate = asyncio.Semaphore(ROUTING_CONCURRENCY)
    first_index: dict[str, int] = {}
    # One deadline for the whole batch: a stalled Temporal must not cost budget × rounds.
    deadline = asyncio.get_running_loop().time() + budget

    async def one(index: int, item: Any) -> EventResult:
        given_id = item.get("event_id") if isinstance(item, dict) else None
        if event_id_problem(given_id) is not None:
            given_id = None  # echoing a malformed id (a number, a lone surrogate) would break the answer
        try:
            # As JSON and strict: a number is not taken for a date, as the OpenAPI declares.
            event = IncomingEvent.model_validate_json(json.dumps(item), strict=True)
        except ValidationError as error:
            return EventResult(
                index=index, event_id=given_id, status="rejected", errors=errors.field_errors(error.errors())
            )
        # Events of one batch are routed concurrently: a repeat inside the batch is
        # decided by position, not by whichever insert happens to win.
        if first_index.setdefault(event.event_id, index) != index:
            return EventResult(index=index, event_id=event.event_id, status="duplicate")
        async with gate:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                outcome = await router.route(event, budget=remaining)
            except Exception:  # Temporal unreachable or too slow: the event was not kept
                problem = FieldError(field="event", message="could not reach the journeys: send it again")
                return EventResult(index=index, event_id=event.event_id, status="failed", errors=[problem])
        return EventResult(index=index, event_id=event.event_id, status=outcome)

    results = list(await asyncio.gather(*(one(index, item) for index, item in enumerate(items))))
    count_events(results)
    return await _flag_missing_profiles(router, results, items)


NO_PROFILE = "no profile yet: messages will be suppressed until one is saved"


async def _flag_missing_profiles(
    router: EventRouter, results: list[EventResult], items: list[Any]
) -> list[EventResult]:
    """An event may come before its customer's profile (the shop's order of calls is its own):
    it is accepted, and its result says so, or a shop would never learn why nothing was sent."""
    accepted = {
        index: items[index]["customer_id"]
        for index, result in enumerate(results)
        if result.status == "accepted"
    }
    if not accepted:
        return results
    known = await asyncio.to_thread(_with_profiles, router.settings, set(accepted.values()))
    return [
        result.model_copy(update={"warning": NO_PROFILE})
        if result.index in accepted and accepted[result.index] not in known
        else result
        for result in results
    ]


def _with_profiles(settings: Settings, customer_ids: set[str]) -> set[str]:
    with session_for(settings.database_url, read_only=True) as session:
        return customers.existing(session, customer_ids)


def save_profile(settings: Settings, profile: CustomerProfile, *, with_consents: bool = True) -> None:
    with session_for(settings.database_url) as session:
        customers.upsert(session, profile, with_consents=with_consents)


def stored_profile(settings: Settings, customer_id: str) -> CustomerProfile | None:
    with session_for(settings.database_url) as session:
        return customers.stored_profile(session, customer_id)
