"""Records event histories of the default journeys for the replay test.

Run after a change that should be replay-safe only to ADD new histories; the existing
ones are the contract that old running journeys keep working:
    python -m tests.histories.record NAME [SAVED_AS]
(SAVED_AS: the files' name instead of NAME, to add a story recorded by newer code beside the
old recording of it.)
They are written decrypted, so they stay readable and replay under any key.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from connection import data_converter, installed_binary, register_search_attributes
from definition.model import Journey
from emulator.server import ProviderEmulator
from ingestion.importer import load_chunk, start_customers
from ingestion.imports import ImportKind, RawRow
from payload_encryption import new_payload_key
from publishing import publish, publish_journeys
from routing.events import EventRouter, IncomingEvent
from settings import Settings
from storage import customers, journey_versions
from storage.customers import CustomerProfile
from storage.database import migrate, session_for
from tests.conftest import JOURNEYS, make_scenario, run
from tests.payloads import decrypted
from tests.test_lifecycle_journey import SIGNED_UP, purchase
from worker import ACTIVITY_THREADS, build_worker
from workflows.handle import JourneyHandle
from workflows.interface import SupportAction, SupportKind, workflow_id
from workflows.journey import JourneyWorkflow

HERE = Path(__file__).parent
LIVE_EDIT = JOURNEYS / "tests" / "live_edit"
"""A second version of the lifecycle journey (recommendations every 14 days, not 30)."""


def scenarios() -> dict[str, object]:
    cart = {"type": "cart_abandoned", "properties": {"cart_id": "k-1", "value": 120.0}}
    return {
        "lifecycle_year": make_scenario(
            SIGNED_UP,
            purchase("1d", "e-1"),
            purchase("20d", "e-2", amount=900.0),
            purchase("40d", "e-3", amount=1200.0),
            purchase("300d", "e-4"),
            {**cart, "at": "301d"},
            start="2026-03-02T22:30:00+01:00",
            until="365d",
            id="c-replay",
        ),
        # A version published while the customer is in `new`, adopted on entering `active`.
        "live_edit": make_scenario(
            SIGNED_UP,
            purchase("1d", "e-1"),
            {"at": "25d", "publish": str(LIVE_EDIT)},
            purchase("30d2h", "e-2"),
            until="50d",
            id="c-live-edit",
        ),
        "continue_as_new": make_scenario(
            *[purchase(f"{day}d", f"e-{day}", amount=30.0) for day in range(6)], until="7d", id="c-can"
        ),
    }


@asynccontextmanager
async def recording(
    keys: str, customer: CustomerProfile
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings, EventRouter]]:
    """A time-skipping server, a worker, the shipped journeys published and `customer` saved."""
    with tempfile.TemporaryDirectory() as folder, ProviderEmulator() as emulator:
        settings = Settings(
            database_url=f"sqlite:///{folder}/record.db",
            events_per_run=3,
            task_queue="cyklo-record",
            sendgrid_api_key="SG.record",
            sendgrid_host=emulator.url,
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="record",  # noqa: S106 - the emulator checks only the account sid
            twilio_base_url=emulator.url,
            payload_keys=keys,
        )
        migrate(settings.database_url)
        publish_journeys(settings, [JOURNEYS])
        with session_for(settings.database_url) as session:
            customers.upsert(session, customer)
            definitions = [
                Journey.model_validate_json(text) for text in journey_versions.newest_definitions(session)
            ]
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=installed_binary("temporal-test-server"),
            data_converter=data_converter(settings),
        )
        try:
            await register_search_attributes(env.client, "default")
            with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
                async with build_worker(env.client, settings, executor):
                    yield env, settings, EventRouter(env.client, settings, definitions)
        finally:
            await env.shutdown()


async def imported_story(keys: str) -> list[str]:
    """An imported customer with two past orders: started by `cyklo import start`, seeded
    with those orders, entering `active` (no welcome), then buying again a month later."""
    scenario = make_scenario(id="c-imported")
    async with recording(keys, scenario.customer) as (env, settings, router):
        now = await env.get_current_time()
        rows = [
            RawRow(
                n,
                {
                    "order_id": f"o-{n}",
                    "customer_id": "c-imported",
                    "amount": 150,
                    "occurred_at": (now - timedelta(days=10 * n)).isoformat(),
                },
            )
            for n in (1, 2)
        ]
        load_chunk(settings.database_url, ImportKind.ORDERS, rows, settings.currency)
        await start_customers(router, ["c-imported"])
        await env.sleep(timedelta(days=31))
        purchase = IncomingEvent(
            event_id="e-1",
            customer_id="c-imported",
            type="purchase",
            occurred_at=await env.get_current_time(),
            properties={"amount": 90.0, "order_id": "o-3"},
        )
        await router.route(purchase)
        await env.sleep(timedelta(days=1))
        handle = env.client.get_workflow_handle(workflow_id("lifecycle", "c-imported"))
        await handle.execute_update(
            JourneyWorkflow.exit, SupportAction(by="Ewa", reason="recorded for the replay test")
        )
        await handle.result()
        return await _histories(env, handle.id)


async def support_story(keys: str) -> list[str]:
    """Every support action and continue-as-new in one enrolment: sign-up, a pause over the
    welcome's wait, resume, skip_wait, purchases past the run's 3 events, move_to, an
    upgrade to a version published meanwhile, exit."""
    scenario = make_scenario(id="c-support")
    async with recording(keys, scenario.customer) as (env, settings, router):
        offset = scenario.start - await env.get_current_time()
        handle = env.client.get_workflow_handle(workflow_id("lifecycle", scenario.customer.id))
        ewa = SupportAction(by="Ewa", reason="recorded for the replay test")

        async def event(index: int, type: str, **properties: object) -> None:
            incoming = IncomingEvent(
                event_id=f"e-{index}",
                customer_id=scenario.customer.id,
                type=type,
                occurred_at=await env.get_current_time() + offset,
                properties=properties,
            )
            await router.route(incoming, clock_offset=offset)

        await event(0, "signed_up")
        await env.sleep(timedelta(hours=1))
        await handle.execute_update(JourneyWorkflow.pause, ewa)
        await env.sleep(timedelta(days=4))
        await handle.execute_update(JourneyWorkflow.resume, ewa)
        await env.sleep(timedelta(hours=1))
        await handle.execute_update(JourneyWorkflow.skip_wait, ewa)
        await env.sleep(timedelta(hours=1))
        for index in (1, 2, 3):
            await event(index, "purchase", amount=40.0, order_id=f"o-{index}")
            await env.sleep(timedelta(hours=2))
        await handle.execute_update(JourneyWorkflow.move_to, ewa.model_copy(update={"stage": "inactive"}))
        await env.sleep(timedelta(days=1))
        publish(settings, [LIVE_EDIT])
        await JourneyHandle(env.client, "lifecycle", scenario.customer.id).perform(SupportKind.UPGRADE, ewa)
        await env.sleep(timedelta(days=1))
        await handle.execute_update(JourneyWorkflow.exit, ewa)
        await handle.result()
        return await _histories(env, handle.id)


async def _histories(env: WorkflowEnvironment, workflow: str) -> list[str]:
    found: list[str] = []
    run_id: str | None = None
    while True:
        history = await env.client.get_workflow_handle(workflow, run_id=run_id).fetch_history()
        found.insert(0, history.to_json())
        run_id = (
            history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
        )
        if run_id is None:
            return found


async def record(name: str, saved_as: str) -> None:
    options = {"events_per_run": 3} if name == "continue_as_new" else {}
    keys = new_payload_key("record")
    if name.startswith("support_actions"):
        histories = await support_story(keys)
    elif name == "imported":
        histories = await imported_story(keys)
    else:
        result = await run(scenarios()[name], record_histories=True, payload_keys=keys, **options)  # type: ignore[arg-type]
        histories = result.histories
    for index, history in enumerate(histories):
        target = HERE / f"{saved_as}_{index}.json"
        target.write_text(json.dumps(await decrypted(json.loads(history), keys), indent=1) + "\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1], saved_as=sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]))
