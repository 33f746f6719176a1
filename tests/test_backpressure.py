"""Back-pressure: a stalled Temporal or database gets a quick 503/429 with Retry-After, never a
kept event that was not delivered; /health and /ready tell a probe what is up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client

from api.app import create_app
from connection import data_converter
from settings import Settings
from storage.database import session_for
from storage.models import Conversion, Event
from tests.conftest import JOURNEYS, World, welcome_row
from tests.stall import Stall

KEY = "shop-platform-key-0001"
AS_SHOP = {"Authorization": f"Bearer {KEY}"}
RPC_TIMEOUT = 1.0
BUDGET = 2.0
SLACK = 1.0
"""What a loaded 2-core machine may add to a deadline before the answer is on the wire."""


@dataclass
class Api:
    http: httpx.AsyncClient
    temporal: Stall
    settings: Settings
    app: Any


async def _api(world: World, **overrides: Any) -> AsyncIterator[Api]:
    """The API talking to the world's Temporal server through a relay the test can stall."""
    with Stall(world.settings.temporal_address).running() as temporal:
        client = await Client.connect(temporal.address, data_converter=data_converter(world.settings))
        settings = world.settings.model_copy(
            update={
                "journeys_dir": JOURNEYS,
                "api_keys": f"{KEY}=events,support:read",
                "temporal_rpc_timeout_seconds": RPC_TIMEOUT,
                "event_budget_seconds": BUDGET,
                **overrides,
            }
        )
        app = create_app(settings, client=client)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cyklo.test", timeout=60) as http:
                yield Api(http, temporal, settings, app)


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    async for running in _api(world):
        yield running


def signed_up(event_id: str, customer: str = "c-ala") -> dict[str, object]:
    return {"event_id": event_id, "customer_id": customer, "type": "signed_up"}


def kept(settings: Settings, event_id: str) -> bool:
    with session_for(settings.database_url) as session:
        return session.get(Event, event_id) is not None


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = await request
    return answer, time.monotonic() - started


async def test_stalled_temporal_gets_503_with_retry_after_within_the_budget_and_keeps_nothing(
    api: Api, world: World
) -> None:
    api.temporal.stop()

    answer, took = await timed(api.http.post("/v1/events", json=signed_up("e-stalled"), headers=AS_SHOP))

    assert answer.status_code == 503, answer.text
    assert took < BUDGET + SLACK
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.json()["results"][0]["status"] == "failed"
    assert not kept(api.settings, "e-stalled")

    api.temporal.resume()
    again = await api.http.post("/v1/events", json=signed_up("e-stalled"), headers=AS_SHOP)

    assert again.status_code == 202 and again.json()["accepted"] == 1
    assert kept(api.settings, "e-stalled")
    description = await world.env.client.get_workflow_handle("journey:lifecycle:c-ala").describe()
    assert description.status is not None and description.status.name == "RUNNING"


def credited(settings: Settings, event_id: str) -> list[tuple[str, float]]:
    with session_for(settings.database_url) as session:
        rows = session.exec(select(Conversion).where(Conversion.event_id == event_id)).all()
        return [(row.template, row.amount) for row in rows]


async def test_a_purchase_not_delivered_keeps_neither_its_event_nor_its_credit(api: Api) -> None:
    with session_for(api.settings.database_url) as session:
        # The welcome went out an hour ago: a purchase within 3 days converts it.
        session.add(
            welcome_row(
                "c-ala",
                datetime.now(UTC) - timedelta(hours=1),
                idempotency_key="c-ala:welcome",
                status="sent",
                conversion_window_seconds=3 * 86400,
            )
        )
        session.commit()
    order = {
        "event_id": "e-order",
        "customer_id": "c-ala",
        "type": "purchase",
        "properties": {"order_id": "o-1", "amount": 120},
    }
    api.temporal.stop()

    answer = await api.http.post("/v1/events", json=order, headers=AS_SHOP)

    assert answer.status_code == 503, answer.text
    assert not kept(api.settings, "e-order")
    assert credited(api.settings, "e-order") == []

    api.temporal.resume()
    again = await api.http.post("/v1/events", json=order, headers=AS_SHOP)

    assert again.status_code == 202 and again.json()["accepted"] == 1
    assert kept(api.settings, "e-order")
    assert credited(api.settings, "e-order") == [("welcome", 120.0)]


async def test_a_batch_answers_within_one_budget_however_many_events_wait(api: Api) -> None:
    api.temporal.stop()
    batch = [signed_up(f"e-batch-{number}", f"c-{number}") for number in range(120)]

    answer, took = await timed(api.http.post("/v1/events", json=batch, headers=AS_SHOP))

    assert answer.status_code == 503
    assert took < BUDGET + SLACK
    assert {result["status"] for result in answer.json()["results"]} == {"failed"}
    assert not any(kept(api.settings, f"e-batch-{number}") for number in range(120))


async def test_full_gate_answers_429_at_once(world: World) -> None:
    async for api in _api(world, max_event_requests=1):
        api.temporal.stop()
        first = asyncio.create_task(api.http.post("/v1/events", json=signed_up("e-first"), headers=AS_SHOP))
        while api.app.state.event_gate.in_flight < 1:
            await asyncio.sleep(0.01)

        second, took = await timed(api.http.post("/v1/events", json=signed_up("e-second"), headers=AS_SHOP))

        assert second.status_code == 429
        assert took < 0.5
        assert int(second.headers["Retry-After"]) > 0
        assert "in flight" in second.json()["detail"]
        assert not kept(api.settings, "e-second")
        assert (await first).status_code == 503


async def test_support_view_of_a_stalled_temporal_is_503_not_a_hang(api: Api) -> None:
    profile = {"email": "ala@example.com", "locale": "pl", "consents": {"email": True}}
    assert (await api.http.put("/v1/customers/c-ala", json=profile, headers=AS_SHOP)).status_code == 200
    assert (await api.http.post("/v1/events", json=signed_up("e-view"), headers=AS_SHOP)).status_code == 202
    api.temporal.stop()

    answer, took = await timed(api.http.get("/v1/customers/c-ala", headers=AS_SHOP))

    assert answer.status_code == 503
    assert "Temporal" in answer.json()["detail"] and int(answer.headers["Retry-After"]) > 0
    assert took < RPC_TIMEOUT + SLACK


async def test_health_is_up_and_ready_names_what_is_not(api: Api) -> None:
    health = await api.http.get("/health")
    ready = await api.http.get("/ready")
    api.temporal.stop()
    not_ready, took = await timed(api.http.get("/ready"))

    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "temporal": "ok", "database": "ok"}
    assert not_ready.status_code == 503
    assert not_ready.json() == {"status": "not ready", "temporal": "timeout", "database": "ok"}
    assert took < RPC_TIMEOUT + SLACK


async def test_ready_reports_an_unanswering_database(world: World, postgres_url: str) -> None:
    host_and_port = postgres_url.split("@", 1)[1].split("/", 1)[0]
    with Stall(host_and_port).running() as database:
        relayed = postgres_url.replace(host_and_port, database.address)
        async for api in _api(world, database_url=relayed):
            database.stop()
            answer, took = await timed(api.http.get("/ready"))
            database.resume()

            assert answer.status_code == 503
            assert answer.json() == {"status": "not ready", "temporal": "ok", "database": "timeout"}
            assert took < RPC_TIMEOUT + SLACK
