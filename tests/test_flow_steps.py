"""The step kinds the default journeys do not use: split, wait until a time of day, repeat, exit."""

from __future__ import annotations

import shutil
from pathlib import Path

from definition.model import SplitSpec
from definition.program import assign_arm
from simulation.runner import simulate
from tests.conftest import JOURNEYS, make_scenario, messages, sent

EXPERIMENT = """\
journey: experiment
name: Experiment
entry:
  - {on: signed_up, to: trial}
stages:
  trial:
    flow:
      - wait: {until: "10:30"}
      - split:
          name: subject_test
          holdout: 20
          arms:
            - {name: welcome_arm, weight: 1, flow: [{send: {channel: email, template: welcome}}]}
            - {name: nudge_arm, weight: 1, flow: [{send: {channel: email, template: first_order_nudge}}]}
      - repeat:
          times: 2
          flow:
            - wait: 1d
            - send: {channel: email, template: recommendations}
      - exit: {reason: trial over}
    transitions:
      - {on: signed_up, to: trial}
"""
SPLIT = SplitSpec.model_validate(
    {
        "name": "subject_test",
        "holdout": 20,
        "arms": [{"name": "welcome_arm", "weight": 1}, {"name": "nudge_arm", "weight": 1}],
    }
)


def _journeys(tmp_path: Path) -> Path:
    shutil.copytree(JOURNEYS / "templates", tmp_path / "templates")
    (tmp_path / "experiment.yaml").write_text(EXPERIMENT)
    return tmp_path


def _customer_in(arm: str | None) -> str:
    return next(f"c-{n}" for n in range(1000) if assign_arm(f"c-{n}", "experiment", SPLIT) == arm)


async def test_split_arm_is_sticky_and_the_flow_waits_repeats_and_exits(tmp_path: Path) -> None:
    customer = _customer_in("nudge_arm")
    scenario = make_scenario(
        {"at": "0s", "type": "signed_up"},
        {"at": "1d12h", "type": "signed_up", "id": "again"},
        until="8d",
        id=customer,
    )

    result = await simulate([_journeys(tmp_path)], scenario)

    outcome = [(entry.at.strftime("%m-%d %H:%M"), entry.template, entry.status) for entry in messages(result)]
    assert outcome == [
        ("03-02 10:30", "first_order_nudge", "sent"),
        ("03-03 10:30", "recommendations", "sent"),
        # signed_up again at 22:00 restarts the stage; the customer keeps their arm
        ("03-04 10:30", "first_order_nudge", "sent"),
        ("03-05 10:30", "recommendations", "capped"),
        ("03-06 10:30", "recommendations", "capped"),
    ]
    journey = result.journeys["experiment"]
    assert journey.experiments == {"subject_test": "nudge_arm"}
    assert journey.exited == "trial over"


async def test_holdout_customers_get_no_arm(tmp_path: Path) -> None:
    scenario = make_scenario({"at": "0s", "type": "signed_up"}, until="3d", id=_customer_in(None))

    result = await simulate([_journeys(tmp_path)], scenario)

    assert [template for _, _, template in sent(result)] == ["recommendations", "recommendations"]
    assert result.journeys["experiment"].experiments == {"subject_test": None}


def test_split_weights_and_holdout_divide_customers_as_written() -> None:
    arms = [assign_arm(f"c-{n}", "experiment", SPLIT) for n in range(4000)]

    assert 0.17 < arms.count(None) / len(arms) < 0.23
    assert abs(arms.count("welcome_arm") - arms.count("nudge_arm")) < 250


async def test_a_customer_who_exited_enrols_again_on_the_next_entry_event(tmp_path: Path) -> None:
    scenario = make_scenario(
        {"at": "0s", "type": "signed_up"},
        {"at": "5d", "type": "signed_up", "id": "again"},
        until="8d",
        id=_customer_in("welcome_arm"),
    )

    result = await simulate([_journeys(tmp_path)], scenario)

    welcomes = [entry for entry in messages(result) if entry.template == "welcome"]
    assert [entry.at.strftime("%m-%d %H:%M") for entry in welcomes] == ["03-02 10:30", "03-07 10:30"]
    journey = result.journeys["experiment"]
    assert journey.exited == "trial over"
    assert [event.event_id for event in journey.recent_events] == ["again"], "a new enrolment starts afresh"
