"""Simulation: the real workflow and activities on the time-skipping test server.

A temporary database and the provider emulator stand in for production; nothing is
faked inside cyklo. The server's clock starts at real time, so each journey runs with
a fixed clock offset that puts the scenario's `start` at the server's "now".
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from connection import data_converter, installed_binary, quiet_runtime, register_search_attributes
from definition.model import Journey
from definition.schedule import zone
from emulator.server import ProviderEmulator
from payload_encryption import new_payload_key
from publishing import publish, publish_journeys
from reports.funnel import JourneyFunnel, Period, journeys_report
from routing.events import EventRouter
from settings import Settings
from simulation.scenario import Scenario, ScenarioPublish
from storage import customers, journey_versions
from storage.database import migrate, session_for
from storage.models import Conversion, Message
from worker import ACTIVITY_THREADS, build_worker
from workflows.handle import JourneyHandle
from workflows.interface import JourneyView


@functools.cache
def runtime() -> Any:
    """The Temporal runtime simulations run on (quiet: no telemetry), one per process."""
    return quiet_runtime()


class TimelineEntry(BaseModel):
    at: datetime
    """In the customer's time zone (ISO 8601 with their offset), to the second: the test
    server's clock runs on for some milliseconds while a step executes."""
    journey: str
    kind: str
    """`stage` for a stage entered, `message` for a message, `event` for an event sent,
    `publish` for a version published (a live edit), `conversion` for a purchase credited to
    a message (at the purchase; `template` is the message's, `detail` the amount)."""
    version: int | None = None
    """The journey version: of the stage entered, the message sent, the version published."""
    stage: str | None = None
    channel: str | None = None
    template: str | None = None
    status: str | None = None
    detail: str | None = None


def _local(moment: datetime, tz: Any) -> datetime:
    return moment.astimezone(tz).replace(microsecond=0)


class SimulationResult(BaseModel):
    timeline: list[TimelineEntry]
    journeys: dict[str, JourneyView]
    """The `state` query of every journey the customer entered, at the end."""
    histories: list[str] = []
    """With `record_histories`: every run's event history as JSON, oldest first, for replay tests."""
    funnels: list[JourneyFunnel] = []
    """The scenario's funnel per journey that sent it something, from its database at the end."""


async def simulate(
    journey_paths: list[Path],
    scenario: Scenario,
    *,
    emulator: ProviderEmulator | None = None,
    database_url: str | None = None,
    events_per_run: int = 500,
    record_histories: bool = False,
    payload_keys: str | None = None,
) -> SimulationResult:
    """Run the scenario; tests pass their own emulator (to inject faults) and database, and
    keys when they read the histories; otherwise a key of its own, gone with the server."""
    with tempfile.TemporaryDirectory(prefix="cyklo-sim-") as folder, ExitStack() as stack:
        if emulator is None:
            emulator = stack.enter_context(ProviderEmulator())
        settings = Settings(
            database_url=database_url or f"sqlite:///{folder}/simulation.db",
            events_per_run=events_per_run,
            task_queue="cyklo-simulation",
            sendgrid_api_key="SG.simulation",
            sendgrid_host=emulator.url,
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="simulation",  # noqa: S106 - the emulator checks only the account sid
            twilio_base_url=emulator.url,
            payload_keys=payload_keys or new_payload_key("simulation"),
        )
        migrate(settings.database_url)
        publish_journeys(settings, journey_paths)
        with session_for(settings.database_url) as session:
            customers.upsert(session, scenario.customer)
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=installed_binary("temporal-test-server"),
            data_converter=data_converter(settings),
            runtime=runtime(),
        )
        try:
            await register_search_attributes(env.client, "default")
            return await _run(env, settings, scenario, record_histories)
        finally:
            await env.shutdown()
            # temporalio can crash at interpreter exit right after a server shut down
            # (sdk-python#300); a moment's pause lets its threads finish first.
            await asyncio.sleep(0.25)


async def _run(
    env: WorkflowEnvironment, settings: Settings, scenario: Scenario, record_histories: bool
) -> SimulationResult:
    with session_for(settings.database_url) as session:
        definitions = [
            Journey.model_validate_json(text) for text in journey_versions.newest_definitions(session)
        ]
    router = EventRouter(env.client, settings, definitions)
    offset = scenario.start - await env.get_current_time()
    timeline: list[TimelineEntry] = []
    tz = zone(scenario.customer.timezone)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(env.client, settings, executor):
            for index, scenario_event in enumerate(scenario.events):
                await _sleep_until(env, offset, scenario.start + scenario_event.at)
                if isinstance(scenario_event, ScenarioPublish):
                    moment = _local(scenario.start + scenario_event.at, tz)
                    timeline.extend(_published(settings, scenario_event, moment))
                    continue
                incoming = scenario.incoming(index, scenario_event)
                routed = await router.route(incoming, clock_offset=offset)
                timeline.append(
                    TimelineEntry(
                        at=_local(incoming.occurred_at, tz),
                        journey="-",
                        kind="event",
                        detail=f"{incoming.type} {incoming.event_id} {_properties(incoming.properties)} {routed}",
                    )
                )
            await _sleep_until(env, offset, scenario.end)
            views = {}
            histories: list[str] = []
            for definition in definitions:
                journey = JourneyHandle(env.client, definition.journey, scenario.customer.id)
                view = await journey.state()
                if view is not None:
                    views[definition.journey] = view
                    timeline.extend(_stages(view, tz))
                    if record_histories:
                        histories.extend(
                            [(await journey.history(run)).to_json() for run in await journey.run_ids()]
                        )
    timeline.extend(_messages(settings, scenario.customer.id, tz))
    timeline.extend(_conversions(settings, scenario.customer.id, tz))
    timeline.sort(key=lambda entry: (entry.at, _KIND_ORDER[entry.kind]))
    with session_for(settings.database_url, read_only=True) as session:
        funnels = journeys_report(session, None, Period(), settings.currency).journeys
    return SimulationResult(timeline=timeline, journeys=views, histories=histories, funnels=funnels)


_KIND_ORDER = {"publish": 0, "event": 1, "conversion": 2, "stage": 3, "message": 4}


async def _sleep_until(env: WorkflowEnvironment, offset: timedelta, moment: datetime) -> None:
    remaining = moment - (await env.get_current_time() + offset)
    if remaining > timedelta(0):
        await env.sleep(remaining)


def _published(settings: Settings, live_edit: ScenarioPublish, moment: datetime) -> list[TimelineEntry]:
    # Validated like `cyklo publish`: a broken file stops the simulation with its file:line.
    return [
        TimelineEntry(
            at=moment,
            journey=published.journey_id,
            kind="publish",
            version=published.version,
            detail=f"{published.journey_id} version {published.version} published"
            if published.version != published.previous
            else f"{published.journey_id} unchanged (version {published.version})",
        )
        for published in publish(settings, [live_edit.publish])
    ]


def _stages(view: JourneyView, tz: Any) -> list[TimelineEntry]:
    return [
        TimelineEntry(
            at=_local(change.at, tz),
            journey=view.journey_id,
            kind="stage",
            version=change.version,
            stage=change.stage,
            detail=f"from {change.previous or '-'} on {change.cause}"
            + (f"; adopts version {change.version}" if change.adopted_from is not None else ""),
        )
        for change in view.stage_history
    ]


def _messages(settings: Settings, customer_id: str, tz: Any) -> list[TimelineEntry]:
    with session_for(settings.database_url) as session:
        rows = session.exec(
            select(Message).where(Message.customer_id == customer_id).order_by(col(Message.scheduled_at))
        ).all()
    return [
        TimelineEntry(
            at=_local(row.scheduled_at, tz),
            journey=row.journey_id,
            kind="message",
            version=row.journey_version,
            stage=row.stage,
            channel=row.channel,
            template=row.template,
            status=row.status,
            detail=row.reason,
        )
        for row in rows
    ]


def _conversions(settings: Settings, customer_id: str, tz: Any) -> list[TimelineEntry]:
    with session_for(settings.database_url) as session:
        rows = session.exec(select(Conversion).where(Conversion.customer_id == customer_id)).all()
    return [
        TimelineEntry(
            at=_local(row.purchased_at, tz),
            journey=row.journey_id,
            kind="conversion",
            stage=row.stage,
            template=row.template,
            detail=f"+{row.amount:.2f} {settings.currency}",
        )
        for row in rows
    ]


def _properties(properties: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in properties.items())
