"""A worker killed after the provider accepted a message must not send it again.

The worker runs as a real process (`python worker.py`) and is killed with SIGKILL while
the emulator holds back its answer to an email it has already accepted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from sqlmodel import select
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
from tests.conftest import JOURNEYS, REPO, make_scenario
from tests.test_lifecycle_journey import SIGNED_UP
from worker import build_worker


async def _wait_for(condition: object, seconds: float = 30.0) -> None:
    for _ in range(int(seconds * 10)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_worker_killed_after_provider_accepted_sends_no_duplicate(
    emulator: ProviderEmulator, tmp_path: Path
) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        await register_search_attributes(env.client, "default")
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/cyklo.db",
            temporal_address=env.client.service_client.config.target_host,
            task_queue="crash-test",
            sendgrid_api_key="SG.test",
            sendgrid_host=emulator.url,
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="token",
            twilio_base_url=emulator.url,
        )
        publish_journeys(settings, [JOURNEYS])
        scenario = make_scenario(SIGNED_UP, until="1d")
        with session_for(settings.database_url) as session:
            customers.upsert(session, scenario.customer)
            lifecycle = Journey.model_validate_json(journey_versions.get(session, "lifecycle").definition)

        worker = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=REPO,
            env={**os.environ, **_environment(settings)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        emulator.hold("email")
        try:
            router = EventRouter(env.client, settings, [lifecycle])
            await router.route(scenario.incoming(0, scenario.events[0]))
            await _wait_for(lambda: len(emulator.messages("email")) == 1)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            emulator.release()
        with ThreadPoolExecutor(max_workers=16) as executor:
            async with build_worker(env.client, settings, executor):
                await _wait_for(lambda: _ledger(settings)[0].status != "sending", seconds=90)
                # Three days on, the journey has gone on to the next message.
                await env.sleep(timedelta(days=3, hours=1))
                await _wait_for(lambda: len(_ledger(settings)) == 2)

        welcome, nudge = _ledger(settings)
        assert [message.subject for message in emulator.messages("email")].count(
            emulator.messages("email")[0].subject
        ) == 1, "the welcome email reached the provider exactly once"
        assert welcome.template == "welcome" and welcome.status == "failed"
        assert welcome.reason is not None and "outcome unknown" in welcome.reason
        assert (nudge.template, nudge.status) == ("first_order_nudge", "sent")
        assert len(emulator.messages("email")) == 2
    finally:
        await env.shutdown()


def _ledger(settings: Settings) -> list[Message]:
    with session_for(settings.database_url) as session:
        return list(session.exec(select(Message).order_by(Message.id)).all())  # type: ignore[arg-type]


def _environment(settings: Settings) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "CYKLO_TASK_QUEUE": settings.task_queue,
        "CYKLO_DATABASE_URL": settings.database_url,
        "CYKLO_JOURNEYS_DIR": str(JOURNEYS),
        "SENDGRID_API_KEY": settings.sendgrid_api_key,
        "CYKLO_SENDGRID_HOST": settings.sendgrid_host,
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "CYKLO_TWILIO_BASE_URL": settings.twilio_base_url or "",
        # A real server moves a dead worker's workflows off its sticky queue after a few
        # seconds; the time-skipping test server never does, so this worker keeps none.
        "CYKLO_WORKFLOW_CACHE_SIZE": "0",
    }
