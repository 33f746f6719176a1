"""Publishing a new journey version never changes a customer already in the journey."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from publishing import publish_journeys
from settings import Settings
from storage.database import session_for
from storage.models import Message
from tests.conftest import JOURNEYS, World, make_scenario
from tests.test_lifecycle_journey import SIGNED_UP
from worker import build_worker
from workflows.interface import JourneyView, workflow_id


async def test_customers_keep_the_version_they_entered_with(world: World, tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys)
    settings = world.settings
    early, late = make_scenario(SIGNED_UP, id="c-early"), make_scenario(SIGNED_UP, id="c-late")
    assert publish_journeys(settings, [journeys])["lifecycle"] == 1
    world.add_customers(early, late)

    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor):
            await world.router().route(early.incoming_at(0))
            await world.env.sleep(timedelta(hours=1))

            lifecycle = journeys / "lifecycle.yaml"
            lifecycle.write_text(lifecycle.read_text().replace("      - wait: 3d\n", "      - wait: 5d\n", 1))
            assert publish_journeys(settings, [journeys])["lifecycle"] == 2

            await world.router().route(late.incoming_at(0))
            await world.env.sleep(timedelta(days=6))
            views = {
                customer: await world.env.client.get_workflow_handle(
                    workflow_id("lifecycle", customer)
                ).query("state", result_type=JourneyView)
                for customer in ("c-early", "c-late")
            }

    assert (views["c-early"].version, views["c-late"].version) == (1, 2)
    assert _nudge_days_after_welcome(settings) == {"c-early": 3, "c-late": 5}


def _nudge_days_after_welcome(settings: Settings) -> dict[str, int]:
    with session_for(settings.database_url) as session:
        rows = session.exec(select(Message).order_by(col(Message.scheduled_at))).all()
    welcome = {row.customer_id: row.scheduled_at for row in rows if row.template == "welcome"}
    return {
        row.customer_id: round((row.scheduled_at - welcome[row.customer_id]) / timedelta(days=1))
        for row in rows
        if row.template == "first_order_nudge"
    }


async def test_the_same_event_signalled_twice_to_a_journey_counts_once(world: World) -> None:
    from workflows.interface import JourneyEvent

    publish_journeys(world.settings, [JOURNEYS])
    scenario = make_scenario(SIGNED_UP, id="c-twice")
    world.add_customers(scenario)
    purchase = JourneyEvent(
        event_id="p-1",
        type="purchase",
        occurred_at=scenario.start,
        properties={"amount": 50.0, "order_id": "o-1"},
    )
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, world.settings, executor):
            await world.router().route(scenario.incoming_at(0))
            handle = world.env.client.get_workflow_handle(workflow_id("lifecycle", "c-twice"))
            # As a retried signal would arrive: straight to the workflow, past the events table.
            await handle.signal("event", purchase)
            await handle.signal("event", purchase)
            await world.env.sleep(timedelta(minutes=1))
            view = await handle.query("state", result_type=JourneyView)

    assert view.metrics["orders"] == 1
    assert [event.effect for event in view.recent_events[-2:]] == ["moved to new", "duplicate, ignored"]


async def test_events_arriving_during_continue_as_new_are_all_kept(world: World) -> None:
    from workflows.interface import JourneyEvent

    settings = world.settings.model_copy(update={"events_per_run": 3})
    publish_journeys(settings, [JOURNEYS])
    scenario = make_scenario(SIGNED_UP, id="c-burst")
    world.add_customers(scenario)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor):
            await world.router(settings).route(scenario.incoming_at(0))
            handle = world.env.client.get_workflow_handle(workflow_id("lifecycle", "c-burst"))
            for number in range(20):
                await handle.signal(
                    "event",
                    JourneyEvent(
                        event_id=f"burst-{number}",
                        type="email_opened",
                        occurred_at=scenario.start,
                        properties={},
                    ),
                )
            await world.env.sleep(timedelta(minutes=1))
            view = await world.env.client.get_workflow_handle(workflow_id("lifecycle", "c-burst")).query(
                "state", result_type=JourneyView
            )

    assert view.metrics["emails_opened"] == 20
    assert view.runs >= 2, "the burst went past events_per_run and continued as new"


async def test_a_customer_who_was_in_the_journey_before_adoption_existed_adopts_at_the_next_entry(
    world: World, tmp_path: Path
) -> None:
    """A worker of before adoption takes the sign-up; the new worker replays that history
    (its stage entry answers no) and the next, live, stage entry adopts the newest version."""

    from storage.models import StageEntry
    from tests.legacy_journey import JourneyBeforeAdoption

    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys)
    settings = world.settings
    publish_journeys(settings, [journeys])
    scenario = make_scenario(SIGNED_UP, {"at": "1d", "type": "purchase", "id": "p-1", "properties": {"order_id": "o-1", "amount": 90.0}}, id="c-before")
    world.add_customers(scenario)
    handle = world.env.client.get_workflow_handle(workflow_id("lifecycle", "c-before"))
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with _worker_of_old_code(world, JourneyBeforeAdoption, executor):
            await world.router().route(scenario.incoming_at(0))
            await world.env.sleep(timedelta(hours=1))
        lifecycle = journeys / "lifecycle.yaml"
        lifecycle.write_text(lifecycle.read_text().replace("      - wait: 2d\n", "      - wait: 1d\n", 1))
        assert publish_journeys(settings, [journeys])["lifecycle"] == 2
        async with build_worker(world.env.client, settings, executor):
            await world.router().route(scenario.incoming_at(1))
            await world.env.sleep(timedelta(hours=1))
            view = await handle.query("state", result_type=JourneyView)

    assert [(change.stage, change.version) for change in view.stage_history] == [("prospect", 1), ("new", 2)]
    with session_for(settings.database_url) as session:
        entries = session.exec(select(StageEntry).where(StageEntry.customer_id == "c-before")).all()
    assert [(row.stage, row.entry) for row in entries] == [("new", 2)], "recorded from the first live entry"


async def test_a_customer_whose_sends_were_activity_tasks_keeps_them_for_the_run_once_each(
    world: World,
) -> None:
    """A worker of the first patch generation takes the sign-up (the welcome an activity task);
    the new worker replays that history and sends the purchase's thank-you the same way for the
    rest of the run, each message once, while a customer signing up now is sent to by local
    activities; both histories replay on the current code."""
    from tests.legacy_journey import JourneyBeforeLocalSends

    settings = world.settings
    publish_journeys(settings, [JOURNEYS])
    purchase = {"at": "1d", "type": "purchase", "id": "p-1", "properties": {"order_id": "o-1", "amount": 90.0}}
    # This test server's clock is the real one: customers whose noon it is, so quiet hours hold nothing.
    midday = _zone_at_midday()
    before = make_scenario(SIGNED_UP, purchase, id="c-before", timezone=midday)
    now = make_scenario(SIGNED_UP, id="c-now", timezone=midday)
    world.add_customers(before, now)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with _worker_of_old_code(world, JourneyBeforeLocalSends, executor):
            await world.router().route(before.incoming_at(0))
            await world.env.sleep(timedelta(hours=1))
        async with build_worker(world.env.client, settings, executor):
            await world.router().route(before.incoming_at(1))
            await world.router().route(now.incoming_at(0))
            await world.env.sleep(timedelta(hours=1))
            histories = {
                customer: await world.env.client.get_workflow_handle(
                    workflow_id("lifecycle", customer)
                ).fetch_history()
                for customer in ("c-before", "c-now")
            }

    with session_for(settings.database_url) as session:
        sent = sorted(
            (row.customer_id, row.template, row.channel)
            for row in session.exec(select(Message).where(col(Message.status) == "sent")).all()
        )
    assert sent == [
        ("c-before", "thank_you", "email"),
        ("c-before", "thank_you", "sms"),
        ("c-before", "welcome", "email"),
        ("c-now", "welcome", "email"),
    ]
    activity_tasks = {
        customer: sum(event.HasField("activity_task_scheduled_event_attributes") for event in history.events)
        for customer, history in histories.items()
    }
    assert activity_tasks == {"c-before": 3, "c-now": 0}
    await _replay_on_the_current_code(world, histories.values())


async def test_a_stage_entry_rides_with_its_send_for_new_runs_and_as_before_for_older_ones(
    world: World,
) -> None:
    """A worker of the second patch generation takes one customer's sign-up; the new worker
    takes that customer's purchase the old way for the rest of the run (the stage entry its
    own write) and a new customer's purchase the new way (the entry with the thank-you's
    claim): one write transaction fewer, every entry and message once, both histories replay."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from storage.models import StageEntry
    from tests.legacy_journey import JourneyBeforeEveryEntryWithItsSend

    settings = world.settings
    publish_journeys(settings, [JOURNEYS])
    midday = _zone_at_midday()
    before, now = (
        make_scenario(
            SIGNED_UP,
            {"at": "1d", "type": "purchase", "id": f"p-{customer}", "properties": {"order_id": "o-1", "amount": 90.0}},
            id=customer,
            timezone=midday,
        )
        for customer in ("c-before", "c-now")
    )
    world.add_customers(before, now)
    commits: list[str] = []

    def count(connection: Any) -> None:
        commits.append("commit")

    async def commits_of_purchase(scenario: Any) -> int:
        commits.clear()
        await world.router().route(scenario.incoming_at(1))
        await world.env.sleep(timedelta(hours=1))
        return len(commits)

    with ThreadPoolExecutor(max_workers=16) as executor:
        async with _worker_of_old_code(world, JourneyBeforeEveryEntryWithItsSend, executor):
            await world.router().route(before.incoming_at(0))
            await world.env.sleep(timedelta(hours=1))
        async with build_worker(world.env.client, settings, executor):
            await world.router().route(now.incoming_at(0))
            await world.env.sleep(timedelta(hours=1))
            event.listen(Engine, "commit", count)
            try:
                by_customer = {"c-before": await commits_of_purchase(before), "c-now": await commits_of_purchase(now)}
            finally:
                event.remove(Engine, "commit", count)
            histories = [
                await world.env.client.get_workflow_handle(workflow_id("lifecycle", customer)).fetch_history()
                for customer in ("c-before", "c-now")
            ]

    # The purchase's record (with its credit), two sends' claims and outcomes, and for the
    # run begun on the older code the stage entry's own transaction.
    assert by_customer == {"c-before": 6, "c-now": 5}
    with session_for(settings.database_url) as session:
        entries = sorted(
            (row.customer_id, row.stage, row.entry) for row in session.exec(select(StageEntry)).all()
        )
        sent = sorted(
            (row.customer_id, row.template, row.channel)
            for row in session.exec(select(Message).where(col(Message.status) == "sent")).all()
        )
    assert entries == [
        ("c-before", "new", 2),
        ("c-before", "prospect", 1),
        ("c-now", "new", 2),
        ("c-now", "prospect", 1),
    ]
    assert sent == [
        (customer, template, channel)
        for customer in ("c-before", "c-now")
        for template, channel in (("thank_you", "email"), ("thank_you", "sms"), ("welcome", "email"))
    ]
    await _replay_on_the_current_code(world, histories)


async def _replay_on_the_current_code(world: World, histories: Any) -> None:
    from temporalio.worker import Replayer

    from workflows.journey import JourneyWorkflow, workflow_runner

    replayer = Replayer(
        workflows=[JourneyWorkflow], workflow_runner=workflow_runner(), data_converter=world.env.client.data_converter
    )
    for history in histories:
        await replayer.replay_workflow(history)


def _zone_at_midday() -> str:
    from datetime import UTC, datetime

    hours_ahead = (12 - datetime.now(UTC).hour + 12) % 24 - 12  # -12 … 11, as the Etc zones go
    return f"Etc/GMT{-hours_ahead:+d}"  # Etc/GMT-3 is three hours AHEAD of UTC (POSIX signs)


def _worker_of_old_code(world: World, journey: type, executor: ThreadPoolExecutor) -> Any:
    """A worker running `journey` (an older JourneyWorkflow) with today's activities."""
    from temporalio.worker import Worker

    from activities.prepare import JourneyPreparation
    from activities.send import MessageSender
    from workflows.journey import workflow_runner

    return Worker(
        world.env.client,
        task_queue=world.settings.task_queue,
        workflows=[journey],
        workflow_runner=workflow_runner(),
        activities=[
            JourneyPreparation(world.settings).prepare_journey,
            MessageSender(world.settings).send_message,
        ],
        activity_executor=executor,
        # No sticky queue to outlive it: the new worker takes the journey at once, from history.
        max_cached_workflows=0,
    )
