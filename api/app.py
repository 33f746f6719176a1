"""The HTTP API: the shop sends profiles and events; support reads one customer.

Every route but /health needs an API key with the right scope. Bad input gets a 422 that
names the field; a batch keeps every good event even when others are rejected.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import pages, privacy, support, webhooks
from api.auth import parse_keys, requires
from definition.identifiers import Identifier, event_id_problem
from definition.model import Journey
from routing.events import EventRouter, IncomingEvent
from settings import Settings
from storage import customers, journey_versions
from storage.customers import CustomerProfile
from storage.database import migrate, session_for
from storage.models import Customer, Event, Message
from workflows.interface import JourneyView, workflow_id

MAX_BATCH = 1000
ROUTING_CONCURRENCY = 50


class FieldError(BaseModel):
    field: str
    message: str


class EventResult(BaseModel):
    index: int
    event_id: str | None
    status: str
    """accepted, duplicate, rejected (bad input: fix it) or failed (not kept: send it again)"""
    errors: list[FieldError] = []


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    failed: int = 0
    results: list[EventResult]


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """The API; tests pass a client of their own Temporal server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from connection import connect
        from publishing import publish_journeys

        migrate(settings.database_url)
        publish_journeys(settings, [settings.journeys_dir])
        app.state.client = client or await connect(settings)
        app.state.router = EventRouter(app.state.client, settings, _published_journeys(settings))
        yield

    if client is None:
        from connection import data_converter

        data_converter(settings)  # no payload keys: refuse here, in one line, not in a startup traceback
    app = FastAPI(title="cyklo", version="0.1.0", lifespan=lifespan, description=__doc__)
    app.state.api_keys = parse_keys(settings.api_keys)
    app.state.settings = settings

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse(
                {"detail": f"request body over {settings.max_request_bytes} bytes: send smaller batches"},
                status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            )
        return await call_next(request)

    app.include_router(webhooks.router)
    app.include_router(support.router)
    app.include_router(privacy.router)
    app.include_router(pages.router)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.put("/v1/customers/{customer_id}", tags=["platform"], dependencies=[Depends(requires("events"))])
    async def put_customer(customer_id: Identifier, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, [{"field": "body", "message": "expected an object"}]
            )
        if body.get("id", customer_id) != customer_id:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [{"field": "id", "message": "differs from the id in the URL"}],
            )
        try:
            profile = CustomerProfile.model_validate({**body, "id": customer_id})
        except ValidationError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _field_errors(error)) from None
        await asyncio.to_thread(_upsert, settings, profile)
        return {"id": customer_id, "status": "saved"}

    @app.post(
        "/v1/events",
        tags=["platform"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=EventsAccepted,
        dependencies=[Depends(requires("events"))],
    )
    async def post_events(request: Request) -> Any:
        body = await _json_body(request)
        items = body if isinstance(body, list) else [body]
        if len(items) > MAX_BATCH:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [{"field": "body", "message": f"{len(items)} events: at most {MAX_BATCH} a batch"}],
            )
        results = await _route_all(request.app.state.router, items)
        summary = EventsAccepted(
            accepted=sum(result.status == "accepted" for result in results),
            duplicates=sum(result.status == "duplicate" for result in results),
            rejected=sum(result.status == "rejected" for result in results),
            failed=sum(result.status == "failed" for result in results),
            results=results,
        )
        if summary.rejected == len(results):
            return JSONResponse(summary.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
        if summary.rejected + summary.failed == len(results):
            return JSONResponse(summary.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
        return summary

    @app.get(
        "/v1/customers/{customer_id}", tags=["support"], dependencies=[Depends(requires("support:read"))]
    )
    async def get_customer(customer_id: Identifier, request: Request) -> dict[str, Any]:
        return await customer_record(request, customer_id)

    return app


async def customer_record(request: Request, customer_id: str) -> dict[str, Any]:
    """Profile, consents, every journey's state, message history and recent events."""
    settings: Settings = request.app.state.settings
    record = await asyncio.to_thread(_customer_record, settings, customer_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id!r}")
    record["journeys"] = {
        journey: view.model_dump(mode="json")
        for journey in _published_ids(settings)
        if (view := await _journey_view(request.app.state.client, journey, customer_id)) is not None
    }
    return record


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > request.app.state.settings.max_request_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "request body too large")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [{"field": "body", "message": f"not JSON: {error}"}]
        ) from None


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(part) for part in item["loc"]) or "body",
            "message": item["msg"].removeprefix("Value error, "),
        }
        for item in error.errors()
    ]


async def _route_all(router: EventRouter, items: list[Any]) -> list[EventResult]:
    gate = asyncio.Semaphore(ROUTING_CONCURRENCY)
    first_index: dict[str, int] = {}

    async def one(index: int, item: Any) -> EventResult:
        given_id = item.get("event_id") if isinstance(item, dict) else None
        if event_id_problem(given_id) is not None:
            given_id = None  # echoing a malformed id (a number, a lone surrogate) would break the answer
        try:
            event = IncomingEvent.model_validate(item)
        except ValidationError as error:
            errors = [FieldError(**problem) for problem in _field_errors(error)]
            return EventResult(index=index, event_id=given_id, status="rejected", errors=errors)
        # Events of one batch are routed concurrently: a repeat inside the batch is
        # decided by position, not by whichever insert happens to win.
        if first_index.setdefault(event.event_id, index) != index:
            return EventResult(index=index, event_id=event.event_id, status="duplicate")
        async with gate:
            try:
                outcome = await router.route(event)
            except Exception:  # Temporal unreachable or timing out: the event was not kept
                problem = FieldError(field="event", message="could not reach the journeys: send it again")
                return EventResult(index=index, event_id=event.event_id, status="failed", errors=[problem])
        return EventResult(index=index, event_id=event.event_id, status=outcome)

    return list(await asyncio.gather(*(one(index, item) for index, item in enumerate(items))))


def _upsert(settings: Settings, profile: CustomerProfile) -> None:
    with session_for(settings.database_url) as session:
        customers.upsert(session, profile)


def _published_ids(settings: Settings) -> list[str]:
    with session_for(settings.database_url) as session:
        return journey_versions.published_ids(session)


def _published_journeys(settings: Settings) -> list[Journey]:
    with session_for(settings.database_url) as session:
        return [Journey.model_validate_json(text) for text in journey_versions.newest_definitions(session)]


def _customer_record(settings: Settings, customer_id: str) -> dict[str, Any] | None:
    with session_for(settings.database_url) as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            return None
        messages = session.exec(
            select(Message)
            .where(Message.customer_id == customer_id)
            .order_by(col(Message.scheduled_at).desc())
            .limit(100)
        ).all()
        events = session.exec(
            select(Event)
            .where(Event.customer_id == customer_id)
            .order_by(col(Event.occurred_at).desc())
            .limit(50)
        ).all()
    return {
        "profile": customer.model_dump(mode="json"),
        "messages": [message.model_dump(mode="json", exclude={"idempotency_key"}) for message in messages],
        "events": [event.model_dump(mode="json") for event in events],
    }


async def _journey_view(client: Client, journey_id: str, customer_id: str) -> JourneyView | None:
    handle = client.get_workflow_handle(workflow_id(journey_id, customer_id))
    try:
        return await handle.query("state", result_type=JourneyView)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
