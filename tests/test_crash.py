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
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator
from publishing import publish_journeys
from settings import Settings, as_environment
from simulation.scenario import Scenario
from storage.database import session_for
from storage.models import Message
from tests.conftest import JOURNEYS, REPO, World, make_scenario
from tests.test_lifecycle_journey import SIGNED_UP
from worker import build_worker


async def _wait_for(condition: object, seconds: float = 30.0) -> None:
    for _ in range(int(seconds * 10)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_worker_killed_after_provider_accepted_sends_no_duplicate(
    emulator: ProviderEmulator, world: World
) -> None:
    settings = world.settings
    scenario = _customer_about_to_sign_up(world)
    worker = _worker_process(settings, stdout=subprocess.DEVNULL)
    emulator.hold("email")
    try:
        await world.router().route(scenario.incoming_at(0))
        await _wait_for(lambda: len(emulator.messages("email")) == 1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        emulator.release()

    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor):
            await _wait_for(lambda: _ledger(settings)[0].status != "sending", seconds=90)
            # Three days on, the journey has gone on to the next message.
            await world.env.sleep(timedelta(days=3, hours=1))
            await _wait_for(lambda: len(_ledger(settings)) == 2)

    welcome, nudge = _ledger(settings)
    assert welcome.template == "welcome" and welcome.status == "failed"
    assert welcome.reason is not None and "outcome unknown" in welcome.reason
    assert (nudge.template, nudge.status) == ("first_order_nudge", "sent")
    subjects = [message.subject for message in emulator.messages("email")]
    assert len(subjects) == 2 and subjects[0] != subjects[1], "the welcome reached the provider exactly once"


async def test_worker_stopped_by_sigterm_finishes_the_send_in_flight(
    emulator: ProviderEmulator, world: World
) -> None:
    """A deploy stops the worker with SIGTERM: the email being sent completes and is recorded."""
    settings = world.settings
    scenario = _customer_about_to_sign_up(world)
    worker = _worker_process(settings, stdout=subprocess.PIPE)
    emulator.hold("email")
    try:
        await world.router().route(scenario.incoming_at(0))
        await _wait_for(lambda: len(emulator.messages("email")) == 1)
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(1)
        assert worker.poll() is None, "the worker waits for the send in flight"
        emulator.release()
        output, _ = await asyncio.to_thread(worker.communicate, timeout=60)
    finally:
        emulator.release()
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0
    assert "cyklo worker: stopped" in output
    [welcome] = _ledger(settings)
    assert (welcome.template, welcome.status) == ("welcome", "sent")


def _customer_about_to_sign_up(world: World) -> Scenario:
    publish_journeys(world.settings, [JOURNEYS])
    # The worker runs on the real clock here: daytime, so the welcome is not held for quiet hours.
    scenario = make_scenario(SIGNED_UP, until="1d", timezone=daytime_zone(datetime.now(UTC)))
    world.add_customers(scenario)
    return scenario


def _worker_process(settings: Settings, stdout: int) -> subprocess.Popen[str]:
    """`python worker.py` as a deploy runs it, against the test's server, database and emulator."""
    return subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=REPO,
        env={**os.environ, **_environment(settings)},
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _ledger(settings: Settings) -> list[Message]:
    with session_for(settings.database_url) as session:
        return list(session.exec(select(Message).order_by(Message.id)).all())  # type: ignore[arg-type]


def _environment(settings: Settings) -> dict[str, str]:
    return {
        **as_environment(settings),
        "CYKLO_JOURNEYS_DIR": str(JOURNEYS),
        # A real server moves a dead worker's workflows off its sticky queue after a few
        # seconds; the time-skipping test server never does, so this worker keeps none.
        "CYKLO_WORKFLOW_CACHE_SIZE": "0",
    }
