"""The HTTP API: the shop sends profiles and events; support reads one customer.

Every route but /health and /ready needs an API key with the right scope (/metrics: `metrics`). Bad input gets a
422 that names the field; a batch keeps every good event even when others are rejected;
Temporal too slow or away gets a 503 with Retry-After within CYKLO_EVENT_BUDGET seconds.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import literal
from sqlmodel import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import (
    docs,
    errors,
    imports,
    metrics,
    pages,
    privacy,
    reports_experiments,
    reports_journeys,
    reports_lifecycle,
    segment,
    shop_webhooks,
    support,
    webhooks,
)
from api.auth import parse_keys
from api.bodies import EventItems, ProfileUpdateBody, invalid
from api.bounded_json import BoundedJsonRoute
from api.dependencies import (
    ClientDep,
    EventGate,
    EventGateDep,
    JourneysDep,
    RouterDep,
    SettingsDep,
    requires,
)
from api.errors import Problem
from api.ingest import route_all, save_profile
from api.metrics import StageCensus
from api.models import (
    API_KEY,
    CustomerIdPath,
    CustomerRecord,
    CustomerSaved,
    EventsAccepted,
    Health,
    ProfileIdPath,
    Readiness,
)
from api.records import customer_record
from api.sessions import SupportSessions
from connection import connect, data_converter
from definition.model import Journey
from process.tracing import instrument_api
from publishing import publish_journeys
from routing.events import EventRouter
from settings import Settings
from storage import journey_versions
from storage.database import migrate, session_for

log = logging.getLogger(__name__)


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """The API; tests pass a client of their own Temporal server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings.database_url)
        if settings.publish_on_start:
            publish_journeys(settings, [settings.journeys_dir])
        app.state.client = client or await connect(settings)
        app.state.router = EventRouter(app.state.client, settings, _published_journeys(settings))
        yield

    if client is None:
        data_converter(settings)  # no payload keys: refuse here, in one line, not in a startup traceback
    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the installed package, not a CDN.
    app = FastAPIOffline(title="cyklo", version="0.1.0", lifespan=lifespan, description=__doc__)
    app.router.route_class = BoundedJsonRoute
    app.state.api_keys = parse_keys(settings.api_keys)
    app.state.settings = settings
    app.state.event_gate = EventGate(settings.max_event_requests)
    app.state.stage_census = StageCensus()
    # Without a configured secret, sessions live as long as this process: enough for one
    # `cyklo api`; several processes behind one address need CYKLO_SESSION_SECRET.
    app.state.support_sessions = SupportSessions(
        settings.session_secret or secrets.token_urlsafe(32),
        app.state.api_keys,
        timedelta(hours=settings.session_hours),
    )
    errors.install(app)
    docs.install(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse(
                {"detail": f"request body over {settings.max_request_bytes} bytes: send smaller batches"},
                status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            )
        return await call_next(request)

    app.include_router(webhooks.router, responses=errors.responses(400, 403, 413, 422, 503))
    app.include_router(segment.routes(settings))
    app.include_router(shop_webhooks.router, responses=errors.responses(413))
    app.include_router(support.router)
    app.include_router(
        privacy.router, dependencies=[API_KEY], responses=errors.responses(401, 403, 404, 422, 503)
    )
    app.include_router(pages.router)
    app.include_router(reports_journeys.router)
    app.include_router(reports_experiments.router)
    app.include_router(reports_lifecycle.router)
    app.include_router(metrics.router)
    instrument_api(app)
    app.include_router(imports.router)

    @app.get("/health", tags=["health"])
    async def health() -> Health:
        """The process is up (no key needed)."""
        return Health(status="ok")

    @app.get(
        "/ready",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Temporal or the database is not reachable"}},
    )
    async def ready(client: ClientDep) -> Any:
        """Temporal and the database answer (no key needed: it shows only ok / unreachable / timeout)."""
        timeout = settings.temporal_rpc_timeout_seconds
        temporal, database = await asyncio.gather(
            _probe(_temporal_answers(client, timeout), timeout),
            _probe(asyncio.to_thread(_database_answers, settings), timeout),
        )
        answer = Readiness(
            status="ready" if temporal == database == "ok" else "not ready",
            temporal=temporal,
            database=database,
        )
        code = status.HTTP_200_OK if answer.status == "ready" else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse(answer.model_dump(), status_code=code)

    @app.put(
        "/v1/customers/{customer_id}",
        tags=["platform"],
        dependencies=[API_KEY, Depends(requires("events"))],
        responses=errors.responses(401, 403, 413, 422, 503),
    )
    async def put_customer(
        customer_id: ProfileIdPath, update: ProfileUpdateBody, settings: SettingsDep
    ) -> CustomerSaved:
        """Create or replace a customer's profile: contact data, locale, time zone, consents."""
        if update.id not in (None, customer_id):
            raise invalid(["id"], "differs from the id in the URL")
        profile = update.model_copy(update={"id": customer_id})
        await asyncio.to_thread(save_profile, settings, profile)
        return CustomerSaved(id=customer_id, status="saved")

    @app.post(
        "/v1/events",
        tags=["platform"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=EventsAccepted,
        dependencies=[API_KEY, Depends(requires("events"))],
        responses=errors.responses(
            401,
            403,
            413,
            422,
            429,
            503,
            r422={"model": Problem | EventsAccepted, "description": "every event rejected, or a bad body"},
            r503={
                "model": Problem | EventsAccepted,
                "description": "no event could be delivered in time (none kept): retry after `Retry-After`",
            },
        ),
    )
    async def post_events(
        items: EventItems, settings: SettingsDep, router: RouterDep, gate: EventGateDep
    ) -> Any:
        """One event or up to 1,000; each is accepted, a duplicate, rejected (names the field) or
        failed (not kept: send it again). Answers within CYKLO_EVENT_BUDGET seconds."""
        if gate.full:
            return errors.refusal(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"{gate.limit} event requests are in flight: retry after {errors.RETRY_AFTER_SECONDS} s",
            )
        with gate.held():
            results = await route_all(router, items, settings.event_budget_seconds)
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
            return JSONResponse(
                summary.model_dump(),
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(errors.RETRY_AFTER_SECONDS)},
            )
        return summary

    @app.get(
        "/v1/customers/{customer_id}",
        tags=["support"],
        dependencies=[API_KEY, Depends(requires("support:read"))],
        responses=errors.responses(401, 403, 404, 422, 503),
    )
    async def get_customer(
        customer_id: CustomerIdPath, settings: SettingsDep, journeys: JourneysDep
    ) -> CustomerRecord:
        """Profile, consents, every journey's state, message history and recent events."""
        return await customer_record(settings, journeys, customer_id)

    return app


async def _probe(check: Awaitable[None], timeout: float) -> Literal["ok", "unreachable", "timeout"]:
    try:
        await asyncio.wait_for(check, timeout)
    except TimeoutError:
        return "timeout"
    except RPCError as error:
        # The SDK reports its own timeout as DEADLINE_EXCEEDED or, racing it, CANCELLED.
        timed_out = error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
        return "timeout" if timed_out else "unreachable"
    except Exception as error:
        # The reason can name hosts and users of the database URL: the log gets its kind only.
        log.warning("readiness check failed: %s", type(error).__name__)
        return "unreachable"
    return "ok"


async def _temporal_answers(client: Client, timeout: float) -> None:
    if not await client.service_client.check_health(timeout=timedelta(seconds=timeout)):
        raise RuntimeError("Temporal is up but its workflow service is not serving")


def _database_answers(settings: Settings) -> None:
    with session_for(settings.database_url) as session:
        session.exec(select(literal(1))).one()


def _published_journeys(settings: Settings) -> list[Journey]:
    with session_for(settings.database_url) as session:
        return [Journey.model_validate_json(text) for text in journey_versions.newest_definitions(session)]
