"""Publishing a new journey version never changes a customer already in the journey."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from sqlmodel import col, select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from connection import installed_binary, register_search_attributes
from definition.model import Journey
from emulator.server import ProviderEmulator
from publishing import publish_journeys
from routing.events import EventRouter
from settings import Settings
from storage import customers, journey_versions
from storage.database import session_for
from storage.models import Message
from tests.conftest import JOURNEYS, make_scenario
from tests.test_lifecycle_journey import SIGNED_UP
from worker import build_worker
from workflows.interface import JourneyView, workflow_id


async def test_customers_keep_the_version_they_entered_with(
    emulator: ProviderEmulator, tmp_path: Path
) -> None:
    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        await register_search_attributes(env.client, "default")
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/cyklo.db",
            task_queue="versions",
            sendgrid_api_key="SG.test",
            sendgrid_host=emulator.url,
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="token",
            twilio_base_url=emulator.url,
        )
        early, late = make_scenario(SIGNED_UP, id="c-early"), make_scenario(SIGNED_UP, id="c-late")
        assert publish_journeys(settings, [journeys])["lifecycle"] == 1
        with session_for(settings.database_url) as session:
            for scenario in (early, late):
                customers.upsert(session, scenario.customer)

        with ThreadPoolExecutor(max_workers=16) as executor:
            async with build_worker(env.client, settings, executor):
                await _router(env, settings).route(early.incoming(0, early.events[0]))
                await env.sleep(timedelta(hours=1))

                lifecycle = journeys / "lifecycle.yaml"
                lifecycle.write_text(
                    lifecycle.read_text().replace("      - wait: 3d\n", "      - wait: 5d\n", 1)
                )
                assert publish_journeys(settings, [journeys])["lifecycle"] == 2

                await _router(env, settings).route(late.incoming(0, late.events[0]))
                await env.sleep(timedelta(days=6))
                views = {
                    customer: await env.client.get_workflow_handle(workflow_id("lifecycle", customer)).query(
                        "state", result_type=JourneyView
                    )
                    for customer in ("c-early", "c-late")
                }

        assert (views["c-early"].version, views["c-late"].version) == (1, 2)
        nudges = _nudge_days_after_welcome(settings)
        assert nudges == {"c-early": 3, "c-late": 5}
    finally:
        await env.shutdown()


def _router(env: WorkflowEnvironment, settings: Settings) -> EventRouter:
    with session_for(settings.database_url) as session:
        lifecycle = Journey.model_validate_json(journey_versions.get(session, "lifecycle").definition)
    return EventRouter(env.client, settings, [lifecycle])


def _nudge_days_after_welcome(settings: Settings) -> dict[str, int]:
    with session_for(settings.database_url) as session:
        rows = session.exec(select(Message).order_by(col(Message.scheduled_at))).all()
    welcome = {row.customer_id: row.scheduled_at for row in rows if row.template == "welcome"}
    return {
        row.customer_id: round((row.scheduled_at - welcome[row.customer_id]) / timedelta(days=1))
        for row in rows
        if row.template == "first_order_nudge"
    }
