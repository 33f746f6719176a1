"""The one typed handle to a journey: its view, events, support actions and runs, and a
journey that is not there told apart from one that said no."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import workflow

from publishing import publish_journeys
from tests.conftest import JOURNEYS, World, make_scenario
from tests.test_lifecycle_journey import SIGNED_UP
from worker import build_worker
from workflows.handle import EVENT_SIGNAL, ActionRefused, JourneyHandle, NoJourney
from workflows.interface import JourneyEvent, SupportAction, SupportKind
from workflows.journey import JourneyWorkflow

EWA = SupportAction(by="Ewa", reason="asked for a break")


def test_every_action_is_an_update_of_the_workflow_under_its_own_name() -> None:
    definition = workflow._Definition.must_from_class(JourneyWorkflow)

    assert {action.value for action in SupportKind} == set(definition.updates)
    assert definition.signals[EVENT_SIGNAL].fn is JourneyWorkflow.event


async def test_a_customer_never_in_the_journey_has_no_view_runs_or_actions(world: World) -> None:
    publish_journeys(world.settings, [JOURNEYS])
    journey = JourneyHandle(world.env.client, "lifecycle", "c-nobody")
    purchase = JourneyEvent(event_id="p-1", type="purchase", occurred_at=make_scenario(SIGNED_UP).start)

    assert await journey.state() is None
    assert await journey.deliver(purchase) is False
    assert await journey.run_ids() == []
    assert await journey.end("customer erased") is False
    with pytest.raises(NoJourney, match="'c-nobody' is not in journey 'lifecycle'"):
        await journey.perform(SupportKind.PAUSE, EWA)


async def test_support_actions_run_the_workflows_updates_and_a_refusal_says_why(world: World) -> None:
    publish_journeys(world.settings, [JOURNEYS])
    scenario = make_scenario(SIGNED_UP, id="c-handle")
    world.add_customers(scenario)
    journey = JourneyHandle(world.env.client, "lifecycle", "c-handle")
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, world.settings, executor):
            await world.router().route(scenario.incoming_at(0))
            await world.env.sleep(timedelta(minutes=1))
            entered = await journey.state()
            paused = await journey.perform(SupportKind.PAUSE, EWA)
            with pytest.raises(ActionRefused, match="pause refused: already paused by Ewa"):
                await journey.perform(SupportKind.PAUSE, EWA)
            moved = await journey.perform(SupportKind.MOVE_TO, SupportAction(by="Ewa", stage="vip"))
            await journey.perform(SupportKind.EXIT, EWA)
            await world.env.sleep(timedelta(minutes=1))
            with pytest.raises(ActionRefused, match="resume refused: the journey has ended"):
                await journey.perform(SupportKind.RESUME, EWA)
            runs = await journey.run_ids()

    assert entered is not None and entered.stage == "prospect"
    assert paused.paused is not None and paused.paused.by == "Ewa"
    assert moved.stage == "vip"
    assert [(item.action, item.by) for item in moved.support_actions] == [
        ("pause", "Ewa"),
        ("move_to", "Ewa"),
    ]
    assert len(runs) == 1
