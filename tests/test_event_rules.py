"""No event the API accepts may fail a workflow task: declared properties with checked values,
one id rule, and a workflow that records and skips what it cannot use."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError
from sqlmodel import select
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.client import WorkflowHandle
from temporalio.worker import Replayer, Worker

from activities.prepare import JourneyPreparation
from activities.send import MessageSender
from connection import data_converter
from definition.events import DECLARED, checked_properties, invalid_declared
from routing.events import IncomingEvent
from settings import Settings
from storage.customers import CustomerProfile
from storage.database import session_for
from storage.models import Event
from tests.conftest import JOURNEYS, World
from tests.legacy_journey import JourneyBeforeTheFix
from tests.test_api import ALA, AS_SHOP, AS_SUPPORT, api, signed_up
from worker import build_worker
from workflows.interface import JourneyEvent, JourneyView, workflow_id
from workflows.journey import JourneyWorkflow, workflow_runner

__all__ = ["api"]  # the API fixture, on the time-skipping server with a worker

BAD_IDS = ["a/b", "a\x00b", "a\nb", "klient-😀", "ala@example.com", "x" * 129, ""]


def purchase(event_id: str, customer: str = "c-ala", **properties: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "type": "purchase",
        "occurred_at": "2026-03-02T10:00:00+01:00",
        "properties": {"order_id": f"o-{event_id}", "amount": 250.0, "category": "shoes", **properties},
    }


def refused_fields(answer: httpx.Response) -> set[str]:
    """The fields a refusal names: per event of a batch, or for the whole body when its JSON
    itself is refused (a lone surrogate, a number out of range) before any event is read."""
    body = answer.json()
    if "results" not in body:
        return {error["field"] for error in body["detail"]}
    return {error["field"] for result in body["results"] for error in result["errors"]}


def stored_event_ids(world: World) -> list[str]:
    with session_for(world.settings.database_url) as session:
        return [event.event_id for event in session.exec(select(Event)).all()]


def journey(world: World, customer: str = "c-ala") -> WorkflowHandle[Any, Any]:
    return world.env.client.get_workflow_handle(workflow_id("lifecycle", customer))


async def state(world: World, customer: str = "c-ala") -> JourneyView:
    return await journey(world, customer).query(JourneyWorkflow.view)


async def task_failures(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(event.event_type == HistoryEventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for event in history.events)


async def eventually(check: Callable[[], Any], seconds: float = 60) -> None:
    """Real time, not skipped time: a worker's task retries run on the wall clock. The default
    leaves room for a CI box twice as slow as a quiet one; a check that holds returns at once."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.2)


async def _enrol(api: httpx.AsyncClient, world: World) -> None:
    await api.put("/v1/customers/c-ala", json=ALA, headers=AS_SHOP)
    assert (await api.post("/v1/events", json=signed_up("e-0"), headers=AS_SHOP)).status_code == 202
    await world.env.sleep(timedelta(minutes=5))


# --- at the door ------------------------------------------------------------------------


async def test_a_purchase_with_a_number_as_category_is_refused_and_the_journey_goes_on(
    api: httpx.AsyncClient, world: World
) -> None:
    await _enrol(api, world)

    refused = await api.post("/v1/events", json=purchase("e-1", category=7), headers=AS_SHOP)
    taken = await api.post("/v1/events", json=purchase("e-2"), headers=AS_SHOP)
    await world.env.sleep(timedelta(minutes=5))

    assert refused.status_code == 422 and refused_fields(refused) == {"properties.category"}
    assert taken.status_code == 202
    record = await api.get("/v1/customers/c-ala", headers=AS_SUPPORT)
    assert record.status_code == 200
    lifecycle = record.json()["journeys"]["lifecycle"]
    assert (lifecycle["stage"], lifecycle["metrics"]["orders"]) == ("new", 1)
    paused = await api.post(
        "/v1/customers/c-ala/journeys/lifecycle/pause", json={"by": "Ewa"}, headers=AS_SUPPORT
    )
    again = await api.post(
        "/v1/customers/c-ala/journeys/lifecycle/pause", json={"by": "Ewa"}, headers=AS_SUPPORT
    )
    assert (paused.status_code, again.status_code) == (200, 409)
    assert stored_event_ids(world) == ["e-0", "e-2"]


@pytest.mark.parametrize("key", ["phone_number", "e_mail", "contact", "mobile", "lastName", "ip_address"])
async def test_a_property_nobody_declared_is_refused_naming_it(
    api: httpx.AsyncClient, world: World, key: str
) -> None:
    answer = await api.post("/v1/events", json=purchase("e-1", **{key: "x"}), headers=AS_SHOP)

    assert answer.status_code == 422
    assert refused_fields(answer) == {f"properties.{key}"}
    message = answer.json()["results"][0]["errors"][0]["message"]
    assert "declared: order_id, amount, category" in message
    assert stored_event_ids(world) == []


@pytest.mark.parametrize(
    "category", ["ala@example.com", "zadzwoń: 601 234 567", "+48 601-234-567", "kontakt ala.k@poczta.onet.pl"]
)
async def test_email_addresses_and_phone_numbers_in_values_are_refused(
    api: httpx.AsyncClient, world: World, category: str
) -> None:
    answer = await api.post("/v1/events", json=purchase("e-1", category=category), headers=AS_SHOP)

    assert answer.status_code == 422 and refused_fields(answer) == {"properties.category"}
    assert "looks like" in answer.json()["results"][0]["errors"][0]["message"]
    assert stored_event_ids(world) == []


def _raw_event(event_id: str, customer_id: str, event_type: str, properties: str) -> str:
    return (
        f'{{"event_id": "{event_id}", "customer_id": "{customer_id}", "type": "{event_type}", '
        f'"properties": {{{properties}}}}}'
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_raw_event("e-1", "c-ala", "purchase", '"amount": 1, "category": "\\udcff"'), "properties.category"),
        (_raw_event("e-1", "c-ala", "purchase", '"amount": 1, "category": "buty\\u0000"'), "properties.category"),
        (_raw_event("e-1", "c-ala", "purchase", '"amount": 1, "category": "a\\nb"'), "properties.category"),
        (_raw_event("e-1", "c-ala", "purchase", '"amount": 1, "order_id": "\\ud800x"'), "properties.order_id"),
        (_raw_event("e-1", "c-ala", "purchase", '"amount": 1, "\\udcff": 1'), "properties"),
        (_raw_event("e-\\udcff", "c-ala", "signed_up", ""), "event_id"),
        (_raw_event("e-1", "c-\\udcff", "signed_up", ""), "customer_id"),
    ],
    ids=["category", "nul", "newline", "order_id", "key", "event_id", "customer_id"],
)
async def test_lone_surrogates_and_control_characters_are_refused_at_the_door(
    api: httpx.AsyncClient, world: World, body: str, field: str
) -> None:
    await _enrol(api, world)

    answer = await api.post("/v1/events", content=body, headers={**AS_SHOP, "Content-Type": "application/json"})

    assert answer.status_code == 422, "refused, not 503 'send it again' for ever"
    assert refused_fields(answer) == {field}
    assert (await api.get("/v1/customers/c-ala", headers=AS_SUPPORT)).status_code == 200
    assert stored_event_ids(world) == ["e-0"]


@pytest.mark.parametrize("amount", ['"nan"', '"Infinity"', '"1e999"', "1e999", "1" + "0" * 400, "-1", '"1_000"'])
async def test_amounts_that_are_not_finite_numbers_are_refused(
    api: httpx.AsyncClient, world: World, amount: str
) -> None:
    body = json.dumps(purchase("e-1")).replace('"amount": 250.0', f'"amount": {amount}')

    answer = await api.post("/v1/events", content=body, headers={**AS_SHOP, "Content-Type": "application/json"})

    assert answer.status_code == 422 and refused_fields(answer) == {"properties.amount"}
    assert stored_event_ids(world) == []


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_standard_json_numbers_are_refused(api: httpx.AsyncClient, world: World, literal: str) -> None:
    body = json.dumps(purchase("e-1")).replace('"amount": 250.0', f'"amount": {literal}')

    answer = await api.post("/v1/events", content=body, headers={**AS_SHOP, "Content-Type": "application/json"})

    assert answer.status_code == 422
    assert stored_event_ids(world) == []


async def test_numeric_text_amounts_and_numeric_order_ids_are_taken(
    api: httpx.AsyncClient, world: World
) -> None:
    await _enrol(api, world)

    answer = await api.post("/v1/events", json=purchase("e-1", amount="2500.00", order_id=1001), headers=AS_SHOP)
    await world.env.sleep(timedelta(minutes=5))

    assert answer.status_code == 202
    view = await state(world)
    assert view.stage == "vip" and view.metrics["total_spent"] == 2500.0
    assert view.recent_events[-1].properties["order_id"] == "1001"


# --- one id rule ----------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_one_id_rule_for_event_customers_profiles_and_url_paths(
    api: httpx.AsyncClient, world: World, bad_id: str
) -> None:
    event = await api.post("/v1/events", json=signed_up("e-1", customer=bad_id), headers=AS_SHOP)
    path = "/v1/customers/" + quote(bad_id, safe="")
    profile = await api.put(path, json=ALA, headers=AS_SHOP)
    fetched = await api.get(path, headers=AS_SUPPORT)
    erased = await api.delete(path, headers=AS_SUPPORT)

    assert event.status_code == 422 and refused_fields(event) == {"customer_id"}
    statuses = (profile.status_code, fetched.status_code, erased.status_code)
    if "/" in bad_id or not bad_id:
        assert all(400 <= code < 500 for code in statuses), "no such route: never a 500"
    else:
        assert statuses == (422, 422, 422)
    assert stored_event_ids(world) == []


async def test_an_id_within_the_rule_is_put_fetched_and_erased(api: httpx.AsyncClient, world: World) -> None:
    customer = "shop:42.a_b-C"

    put = await api.put(f"/v1/customers/{customer}", json=ALA, headers=AS_SHOP)
    event = await api.post("/v1/events", json=signed_up("e-1", customer=customer), headers=AS_SHOP)
    await world.env.sleep(timedelta(minutes=5))
    fetched = await api.get(f"/v1/customers/{customer}", headers=AS_SUPPORT)
    erased = await api.delete(f"/v1/customers/{customer}", headers=AS_SUPPORT)

    assert (put.status_code, event.status_code, fetched.status_code, erased.status_code) == (200, 202, 200, 200)
    assert fetched.json()["journeys"]["lifecycle"]["stage"] == "prospect"
    assert erased.json()["journeys_ended"] == ["lifecycle"]


def test_profiles_and_events_share_the_id_rule() -> None:
    for bad_id in BAD_IDS:
        with pytest.raises(ValidationError):
            CustomerProfile(id=bad_id)
        with pytest.raises(ValidationError):
            IncomingEvent(customer_id=bad_id, type="signed_up")
    CustomerProfile(id="c-1")
    IncomingEvent(customer_id="c-1", type="signed_up")


# --- the workflow: record and skip -----------------------------------------------------


async def test_a_bad_event_that_slipped_past_the_api_is_recorded_and_skipped(
    api: httpx.AsyncClient, world: World
) -> None:
    await _enrol(api, world)
    slipped = JourneyEvent(
        event_id="e-bad",
        type="purchase",
        occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
        properties={"order_id": "o-1", "amount": "lots", "category": 7},
    )

    await journey(world).signal(JourneyWorkflow.event, slipped)
    await api.post("/v1/events", json=purchase("e-good"), headers=AS_SHOP)
    await world.env.sleep(timedelta(minutes=5))

    view = await state(world)
    effects = {record.event_id: (record.effect, record.properties) for record in view.recent_events}
    assert effects["e-bad"] == ("skipped: invalid properties (amount, category)", {})
    assert effects["e-good"][0] == "moved to new"
    assert (view.stage, view.metrics["orders"]) == ("new", 1)
    assert await task_failures(journey(world)) == 0
    history = await journey(world).fetch_history()
    replayed = await _replayer(world).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, "the skip replays deterministically"


async def test_a_journey_wedged_by_a_bad_purchase_before_the_fix_recovers_on_the_fixed_worker(
    api: httpx.AsyncClient, world: World
) -> None:
    settings = world.settings.model_copy(update={"task_queue": "upgrade", "journeys_dir": JOURNEYS})
    router = world.router(settings)
    handle = journey(world, "c-wedged")
    await until_daytime_in_warsaw(world)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with legacy_worker(world, settings, executor):
            await router.route(IncomingEvent.model_validate(signed_up("e-0", customer="c-wedged")))
            await handle.signal(
                JourneyWorkflow.event,
                JourneyEvent(
                    event_id="e-bad",
                    type="purchase",
                    occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
                    properties={"order_id": "o-1", "amount": 100.0, "category": 7},
                ),
            )

            async def wedged() -> bool:
                return await task_failures(handle) > 0

            await eventually(wedged)

        async with build_worker(world.env.client, settings, executor):
            await router.route(IncomingEvent.model_validate(purchase("e-good", customer="c-wedged")))

            async def recovered() -> bool:
                view = await handle.query(JourneyWorkflow.view)
                return any(record.event_id == "e-good" for record in view.recent_events)

            await eventually(recovered, seconds=60)
            view = await handle.query(JourneyWorkflow.view)

    effects = {record.event_id: record.effect for record in view.recent_events}
    assert effects["e-bad"] == "skipped: invalid properties (category)"
    assert (view.stage, view.metrics["orders"]) == ("new", 1)
    replayed = await _replayer(world).replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
    assert replayed.replay_failure is None


async def test_a_history_where_an_older_worker_counted_a_missing_amount_as_zero_still_replays(
    api: httpx.AsyncClient, world: World
) -> None:
    settings = world.settings.model_copy(update={"task_queue": "legacy"})
    router = world.router(settings)
    handle = journey(world, "c-legacy")
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with legacy_worker(world, settings, executor):
            await router.route(IncomingEvent.model_validate(signed_up("e-0", customer="c-legacy")))
            await handle.signal(
                JourneyWorkflow.event,
                JourneyEvent(
                    event_id="e-nan",
                    type="purchase",
                    occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
                    properties={"order_id": "o-1", "amount": None},
                ),
            )
            await world.env.sleep(timedelta(days=3))
            view = await handle.query(JourneyWorkflow.view)
            history = await handle.fetch_history()

    assert view.stage == "new", "the old worker took it as a purchase of 0"
    replayed = await _replayer(world).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, "the new check is guarded by workflow.patched"


async def until_daytime_in_warsaw(world: World) -> None:
    """The test server's clock starts at the real time: skip it to the journey's default zone's
    daytime, so the welcome goes at the sign-up whenever the test runs. (At night it waited for
    quiet hours, and on a slow box the run's first send then made a history that does not replay:
    a known, unfixed bug, told in the 2026-12-07 closing note, to be fixed with a test of its own.)"""
    warsaw = (await world.env.get_current_time()).astimezone(ZoneInfo("Europe/Warsaw"))
    if not 10 <= warsaw.hour < 18:
        morning = warsaw.replace(hour=10, minute=0, second=0, microsecond=0)
        if morning <= warsaw:
            morning += timedelta(days=1)
        await world.env.sleep(morning - warsaw)


def legacy_worker(world: World, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    return Worker(
        world.env.client,
        task_queue=settings.task_queue,
        workflows=[JourneyBeforeTheFix],
        workflow_runner=workflow_runner(),
        activities=[JourneyPreparation(settings).prepare_journey, MessageSender(settings).send_message],
        activity_executor=executor,
    )


def _replayer(world: World) -> Replayer:
    return Replayer(
        workflows=[JourneyWorkflow], data_converter=data_converter(world.settings), workflow_runner=workflow_runner()
    )


# --- the vocabulary, without a server ---------------------------------------------------


def test_every_event_property_a_default_template_reads_is_declared() -> None:
    used = set()
    for template in JOURNEYS.glob("templates/**/*.*"):
        used |= set(re.findall(r"event\.properties\.get\(\"(\w+)\"\)", template.read_text()))
    declared = {name for properties in DECLARED.values() for name in properties}

    assert used and used <= declared


def test_the_workflow_check_names_declared_properties_and_never_quotes_values() -> None:
    assert invalid_declared("purchase", {"amount": 10, "category": 7, "extra": {"deep": [1]}}) == ["category"]
    assert invalid_declared("purchase", {"category": "shoes"}) == ["amount"]
    assert invalid_declared("cart_abandoned", {"cart_id": "k-1", "items_count": 2.5}) == ["items_count"]
    assert invalid_declared("visit", {"anything": object()}) == []
    _, problems = checked_properties("purchase", {"amount": "secret-value", "category": "x" * 500})
    assert all("secret-value" not in problem.message and "xxx" not in problem.message for problem in problems)


def test_normalised_values_are_what_the_workflow_reads() -> None:
    normalised, problems = checked_properties(
        "cart_abandoned", {"cart_id": 77, "value": "19.90", "items_count": "3"}
    )

    assert problems == []
    assert normalised == {"cart_id": "77", "value": 19.9, "items_count": 3}
