"""Every step kind, driven through the machine."""

from __future__ import annotations

from typing import get_args

import pytest

from definition.model import STEP_KINDS, AnyStep, SplitSpec
from definition.program import assign_arm
from tests.unit.kit import Drive, at, one_stage
from workflows.interface import SupportKind
from workflows.machine import Done, Sleep

pytestmark = pytest.mark.unit


def email(template: str, **fields: object) -> dict[str, object]:
    return {"send": {"channel": "email", "template": template, **fields}}


def test_send_goes_out_at_once_with_a_key_of_its_enrolment_stage_entry_and_step() -> None:
    drive = Drive(one_stage([email("welcome")]))

    drive.event("signed_up")

    assert drive.sent == [(at("2026-03-02T10:00:00+01:00"), "welcome")]
    request = drive.requests[0].request
    assert request.idempotency_key == "journey:steps:c-1/run1/1/one/0"
    assert (request.channel, request.stage, request.step, request.send_at) == (
        "email",
        "one",
        "one/0",
        drive.now,
    )
    assert drive.state.messages[0].status == "sent"
    assert drive.state.pc == 1
    assert drive.effect == Sleep(None, None)


def test_wait_keeps_one_timer_and_sends_the_next_step_when_it_ends() -> None:
    drive = Drive(one_stage([email("a"), {"wait": "3d"}, email("b")]))
    drive.event("signed_up")

    assert drive.effect == Sleep(at("2026-03-05T10:00:00+01:00"), "wait (one/1)")
    assert drive.state.timer is not None and drive.state.timer.at == at("2026-03-05T10:00:00+01:00")
    drive.wait("3d")

    assert drive.templates() == ["a", "b"]
    assert drive.sent[1][0] == at("2026-03-05T10:00:00+01:00")
    assert drive.state.timer is None


def test_wait_until_a_time_of_day_and_since_the_stage() -> None:
    flow = [
        {"wait": {"until": "10:00"}},
        email("morning"),
        {"wait": {"duration": "2d", "since": "stage"}},
        email("fixed_offset"),
    ]
    drive = Drive(one_stage(flow), start="2026-03-02T12:00:00+01:00")
    drive.event("signed_up")
    drive.wait("5d")

    assert drive.sent == [
        (at("2026-03-03T10:00:00+01:00"), "morning"),
        (at("2026-03-04T12:00:00+01:00"), "fixed_offset"),
    ]


WAIT_FOR = [
    {
        "wait_for": {
            "event": "visit",
            "when": "event.properties.page == 'cart'",
            "timeout": "1d",
            "then": [email("came_back")],
            "on_timeout": [email("nudge")],
        }
    },
    email("after"),
]


def test_wait_for_ends_on_its_event_when_the_condition_holds() -> None:
    drive = Drive(one_stage(WAIT_FOR))
    drive.event("signed_up")
    assert drive.effect == Sleep(at("2026-03-03T10:00:00+01:00"), "waiting for visit until timeout")

    assert drive.event("visit", after="1h", page="home") == "recorded"
    assert drive.event("visit", page="cart") == "ended a wait_for"

    assert drive.templates() == ["came_back", "after"]
    assert drive.state.waiting_for is None and drive.state.timer is None


def test_wait_for_runs_its_timeout_flow_when_the_event_does_not_come() -> None:
    drive = Drive(one_stage(WAIT_FOR))
    drive.event("signed_up")
    drive.wait("2d")

    assert drive.sent == [
        (at("2026-03-03T10:00:00+01:00"), "nudge"),
        (at("2026-03-03T10:00:00+01:00"), "after"),
    ]


BRANCH = [
    {"branch": {"if": "event.type == 'purchase'", "then": [email("buyer")], "else": [email("visitor")]}}
]


@pytest.mark.parametrize(("event", "template"), [("purchase", "buyer"), ("signed_up", "visitor")])
def test_branch_takes_then_or_else_on_the_stage_event(event: str, template: str) -> None:
    drive = Drive(one_stage([*BRANCH, email("both")]))

    if event == "purchase":
        drive.event(event, amount=10.0)
    else:
        drive.event(event)

    assert drive.templates() == [template, "both"]


SPLIT = {
    "name": "subject",
    "arms": [
        {"name": "a", "weight": 50, "flow": [email("arm_a")]},
        {"name": "b", "weight": 50, "flow": [email("arm_b")]},
    ],
}


def test_split_sends_the_customers_arm_and_keeps_it_on_a_second_visit() -> None:
    journey = one_stage([{"split": SPLIT}, email("after")])
    drive = Drive(journey, customer_id="c-7")
    arm = assign_arm("c-7", "steps", SplitSpec.model_validate(SPLIT))
    drive.event("signed_up")
    drive.support(SupportKind.MOVE_TO, stage="one")

    assert arm in ("a", "b")
    assert drive.state.experiments == {"subject": arm}
    assert drive.templates() == [f"arm_{arm}", "after"] * 2


def test_split_holdout_gets_no_arm_and_goes_on_after_the_split() -> None:
    split = {**SPLIT, "holdout": 99}
    customer = next(
        f"c-{n}"
        for n in range(1000)
        if assign_arm(f"c-{n}", "steps", SplitSpec.model_validate(split)) is None
    )
    drive = Drive(one_stage([{"split": split}, email("after")]), customer_id=customer)

    drive.event("signed_up")

    assert drive.state.experiments == {"subject": None}
    assert drive.templates() == ["after"]


def test_repeat_times_runs_its_flow_that_often_with_a_key_per_iteration() -> None:
    drive = Drive(one_stage([{"repeat": {"times": 2, "flow": [email("again")]}}, email("after")]))

    drive.event("signed_up")

    assert drive.templates() == ["again", "again", "after"]
    assert [send.request.step for send in drive.requests] == ["one/0/flow/0#1", "one/0/flow/0#2", "one/1"]
    assert drive.state.loop_counters == {}


def test_repeat_without_times_goes_on_until_the_stage_is_left() -> None:
    flow = [{"repeat": {"flow": [{"wait": "1d"}, email("daily")]}}]
    journey = one_stage(flow)
    journey["stages"]["one"]["transitions"] = [{"on": "purchase", "to": "two"}]
    drive = Drive(journey)
    drive.event("signed_up")
    drive.wait("3d")
    drive.event("purchase", amount=5.0, after="12h")
    drive.wait("3d")

    assert drive.templates() == ["daily", "daily", "daily", "two"]


def test_exit_ends_the_journey_and_skips_the_rest() -> None:
    drive = Drive(one_stage([email("bye"), {"exit": {"reason": "done"}}, email("never")]))

    drive.event("signed_up")

    assert drive.templates() == ["bye"]
    assert drive.effect == Done("done")
    assert drive.state.exited == "done"


def test_bare_exit_completes() -> None:
    drive = Drive(one_stage(["exit"]))
    drive.event("signed_up")

    assert drive.effect == Done("completed")


def test_step_kinds_are_the_unions_keys_and_each_is_covered_here() -> None:
    assert STEP_KINDS == ("send", "wait", "wait_for", "branch", "split", "repeat", "exit")
    assert len(STEP_KINDS) == len(get_args(AnyStep))
