"""Continue-as-new hands the state over whole; states of older runs and answers recorded
before still decode; the view."""

from __future__ import annotations

import json

import pytest

from definition.program import label as label_of
from tests.unit.kit import LIFECYCLE, Drive, at, compiled
from workflows.interface import JourneyState
from workflows.machine import ContinueAsNew

pytestmark = pytest.mark.unit


def test_enough_events_continue_as_new_and_the_next_run_goes_on_as_if_uninterrupted() -> None:
    journey = compiled(LIFECYCLE)
    short, whole = Drive(journey, events_per_run=3), Drive(journey)
    for drive in (short, whole):
        drive.event("signed_up")
        drive.event("visit", after="1h")
        drive.event("visit", after="1h")
    assert short.effect == ContinueAsNew()
    assert whole.effect != ContinueAsNew()

    carried = JourneyState.model_validate_json(short.machine.carried_state().model_dump_json())
    assert carried.runs == 2
    assert carried.model_dump(exclude={"runs"}) == short.state.model_dump(exclude={"runs"})
    assert carried.timer == whole.state.timer is not None
    following = Drive(journey, start=short.now.isoformat(), state=carried)
    for drive in (following, whole):
        drive.event("purchase", after="2d", amount=100.0)
        drive.wait("30d")

    assert [send.request for send in following.requests] == [send.request for send in whole.requests[1:]]
    assert following.state.model_dump(exclude={"runs"}) == whole.state.model_dump(exclude={"runs"})


def test_a_state_from_before_the_single_timer_keeps_its_wake_up() -> None:
    old = {
        "instance": "i",
        "stage": "prospect",
        "wake_at": "2026-03-05T10:00:00+01:00",
        "wake_reason": "wait (prospect/1)",
        "waiting_for": None,
    }
    waiting = {
        "instance": "i",
        "wake_at": "2026-03-03T10:00:00+01:00",
        "wake_reason": "waiting for visit until timeout",
        "waiting_for": {"event": "visit", "when": None, "deadline": "2026-03-03T10:00:00+01:00"},
    }

    state, waiting_state = JourneyState.model_validate(old), JourneyState.model_validate(waiting)

    assert state.timer is not None
    assert (state.timer.at, state.timer.reason) == (at("2026-03-05T10:00:00+01:00"), "wait (prospect/1)")
    assert waiting_state.timer is not None and waiting_state.timer.at == at("2026-03-03T10:00:00+01:00")
    assert waiting_state.waiting_for is not None and waiting_state.waiting_for.event == "visit"
    assert "wake_at" not in JourneyState.model_validate(old).model_dump()


def test_the_view_names_steps_as_support_reads_them() -> None:
    drive = Drive(LIFECYCLE)
    assert drive.machine.view(drive.now).step is None
    drive.event("purchase", amount=100.0)

    view = drive.machine.view(drive.now)

    assert (view.step, view.step_kind, view.step_path) == ("wait 2d before cross_sell", "wait", "new/2")
    assert (view.stage, view.previous_stage, view.runs, view.customer_id) == ("new", None, 1, "c-1")
    assert view.next_wake_at == at("2026-03-04T10:00:00+01:00")
    assert view.metrics["orders"] == 1
    assert [message.template for message in view.messages] == ["thank_you", "thank_you"]


@pytest.mark.parametrize(
    ("flow", "label"),
    [
        ([{"send": {"channel": "sms", "template": "hi"}}], "send sms hi"),
        ([{"wait": {"until": "10:00"}}], "wait until 10:00"),
        ([{"wait": {"duration": "261d", "since": "stage"}}], "wait 261d since entering the stage"),
        ([{"wait_for": {"event": "visit", "timeout": "1h"}}], "wait for visit (at most 1h)"),
        ([{"branch": {"if": "stage == 'one'", "then": []}}], "branch if stage == 'one'"),
        ([{"split": {"name": "test", "arms": [{"name": "a", "weight": 1}]}}], "split test"),
        ([{"repeat": {"times": 2, "flow": [{"wait": "1d"}]}}], "repeat 2 times"),
        ([{"exit": {"reason": "done"}}], "exit (done)"),
    ],
)
def test_every_step_kind_has_a_label(flow: list[object], label: str) -> None:
    journey = compiled(
        {
            "journey": "j",
            "name": "J",
            "entry": [{"on": "signed_up", "to": "one"}],
            "stages": {"one": {"flow": flow}},
        }
    )

    found = label_of(journey.programs["one"], 0)

    assert found is not None and found.text == label


def test_a_deflated_definition_reads_back_whole_and_an_answer_recorded_before_as_it_was() -> None:
    from workflows.interface import PreparedJourney

    definition_json = compiled(LIFECYCLE).definition.model_dump_json()
    deflated = PreparedJourney(
        version=1, definition_json="", definition_deflated=PreparedJourney.deflate(definition_json), timezone=""
    )
    recorded_before = PreparedJourney.model_validate_json(
        f'{{"version": 1, "definition_json": {json.dumps(definition_json)}, "timezone": ""}}'
    )
    nothing_newer = PreparedJourney(version=1, definition_json="", timezone="")

    assert deflated.definition() == recorded_before.definition() == definition_json
    assert len(deflated.model_dump_json()) < len(recorded_before.model_dump_json()) / 3
    assert nothing_newer.definition() == ""
