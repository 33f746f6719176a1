"""What a journey test expects (`expect:`), checked against a simulated timeline, no server.

Ala signs up on Monday 2 March 2026 in Warsaw; the timelines below are what the simulator
would report of her.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from definition.loader import load_journeys_or_raise
from simulation.expectations import Expectations, name_problems, template_failures, unmet
from simulation.runner import TimelineEntry

pytestmark = pytest.mark.unit

JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"


def stage(at: str, name: str, journey: str = "lifecycle") -> TimelineEntry:
    return TimelineEntry(at=_local(at), journey=journey, kind="stage", stage=name)


def message(
    at: str,
    template: str,
    channel: str = "email",
    status: str = "sent",
    journey: str = "lifecycle",
    **more: Any,
) -> TimelineEntry:
    return TimelineEntry(
        at=_local(at),
        journey=journey,
        kind="message",
        template=template,
        channel=channel,
        status=status,
        **more,
    )


def _local(at: str) -> datetime:
    return datetime.fromisoformat(f"{at}:00+01:00")


ALA = [
    stage("2026-03-02T22:30", "prospect"),
    message("2026-03-03T09:00", "welcome"),
    message("2026-03-13T09:00", "first_order_last_call", channel="sms", status="suppressed"),
    stage("2026-03-14T10:00", "new"),
    message("2026-03-14T10:00", "thank_you"),
    stage("2026-03-20T10:00", "active"),
    message("2026-04-19T10:00", "recommendations"),
    message("2026-05-19T10:00", "recommendations"),
    stage("2026-06-18T10:00", "inactive"),
]


def expect(**fields: Any) -> Expectations:
    return Expectations.model_validate(fields)


def test_a_message_matching_template_channel_status_and_time_prefix_is_met() -> None:
    wanted = expect(
        messages=[
            {"template": "welcome", "channel": "email", "status": "sent", "at": "2026-03-03T09:00"},
            {"template": "welcome", "at": "2026-03-03"},
            {"template": "first_order_last_call", "status": "suppressed", "journey": "lifecycle"},
        ]
    )

    assert unmet(wanted, ALA) == []


def test_a_message_at_another_time_is_unmet_and_says_when_it_went() -> None:
    wanted = expect(
        messages=[{"template": "welcome", "channel": "email", "status": "sent", "at": "2026-03-02T22:30"}]
    )

    assert unmet(wanted, ALA) == [
        "message welcome (email, sent, at 2026-03-02T22:30): not found; saw welcome email sent at 2026-03-03T09:00"
    ]


def test_a_message_with_another_status_channel_or_journey_is_unmet() -> None:
    wanted = expect(
        messages=[
            {"template": "first_order_last_call", "status": "sent"},
            {"template": "thank_you", "channel": "sms"},
            {"template": "welcome", "journey": "abandoned_cart"},
        ]
    )

    assert unmet(wanted, ALA) == [
        "message first_order_last_call (sent): not found; saw first_order_last_call sms suppressed at 2026-03-13T09:00",
        "message thank_you (sms): not found; saw thank_you email sent at 2026-03-14T10:00",
        "message welcome (in abandoned_cart): not found; saw welcome email sent at 2026-03-03T09:00",
    ]


def test_a_message_never_attempted_is_unmet_as_absent() -> None:
    assert unmet(expect(messages=[{"template": "cross_sell"}]), ALA) == [
        "message cross_sell: not found; no cross_sell message at all"
    ]


def test_not_sent_holds_for_a_suppressed_message_and_fails_for_one_that_went_out() -> None:
    assert unmet(expect(not_sent=["first_order_last_call", "cross_sell"]), ALA) == []
    assert unmet(expect(not_sent=["recommendations"]), ALA) == [
        "not_sent recommendations: email sent at 2026-04-19T10:00, email sent at 2026-05-19T10:00"
    ]


def test_count_counts_messages_that_went_out() -> None:
    assert unmet(expect(count={"recommendations": 2, "first_order_last_call": 0}), ALA) == []
    assert unmet(expect(count={"recommendations": 3, "welcome": 0}), ALA) == [
        "count recommendations: expected 3, sent 2 (email sent at 2026-04-19T10:00, email sent at 2026-05-19T10:00)",
        "count welcome: expected 0, sent 1 (email sent at 2026-03-03T09:00)",
    ]
    assert unmet(expect(count={"cross_sell": 1}), ALA) == ["count cross_sell: expected 1, sent 0"]


def test_stages_in_order_with_others_between_are_met() -> None:
    assert unmet(expect(stages=["prospect", "new", "active", "inactive"]), ALA) == []
    assert unmet(expect(stages=["prospect", "inactive"]), ALA) == []


def test_stages_out_of_order_or_missing_are_unmet_with_the_path_seen() -> None:
    assert unmet(expect(stages=["prospect", "active", "new"]), ALA) == [
        "stages: expected new after active; saw prospect → new → active → inactive"
    ]
    assert unmet(expect(stages=["vip"]), ALA) == [
        "stages: expected vip; saw prospect → new → active → inactive"
    ]


def test_final_stage_is_the_last_stage_entered() -> None:
    assert unmet(expect(final_stage="inactive"), ALA) == []
    assert unmet(expect(final_stage="active"), ALA) == [
        "final_stage: expected active; ended in inactive (prospect → new → active → inactive)"
    ]


def test_with_two_journeys_entered_stages_need_the_journey_named() -> None:
    both = [*ALA, stage("2026-03-05T12:00", "cart", journey="abandoned_cart")]

    assert unmet(expect(final_stage="inactive"), both) == [
        "final_stage: the customer entered abandoned_cart and lifecycle; say which journey with `expect.journey`"
    ]
    assert unmet(expect(journey="lifecycle", final_stage="inactive"), both) == []
    assert unmet(expect(journey="abandoned_cart", stages=["cart"], final_stage="cart"), both) == []


def test_stages_of_a_journey_never_entered_are_unmet() -> None:
    assert unmet(expect(journey="abandoned_cart", stages=["cart"]), ALA) == [
        "stages: the customer never entered abandoned_cart (entered: lifecycle)"
    ]
    assert unmet(expect(final_stage="prospect"), []) == ["final_stage: the customer entered no journey"]


def test_a_message_that_failed_to_render_is_a_template_failure() -> None:
    broken = message(
        "2026-03-03T09:00", "welcome", status="failed", detail="template error: 'coupon' is undefined"
    )
    bounced = message("2026-03-04T09:00", "welcome", status="failed", detail="provider refused: 400")

    assert template_failures([*ALA, broken, bounced]) == [broken]


def test_names_the_journeys_do_not_have_are_problems_on_their_line(tmp_path: Path) -> None:
    scenario = tmp_path / "typo.yaml"
    scenario.write_text(
        "expect:\n"
        "  journey: lifecycle\n"
        "  messages:\n"
        "    - {template: welcom}\n"
        "    - {template: welcome, channel: sms}\n"
        "    - {template: cart_reminder, journey: abandoned_cart}\n"
        "  not_sent: [first_order_lastcall]\n"
        "  stages: [prospect, nwe]\n"
        "  count: {recommendations: 2}\n"
    )
    definitions = [journey.definition for journey in load_journeys_or_raise([JOURNEYS])]
    wanted = expect(
        journey="lifecycle",
        messages=[
            {"template": "welcom"},
            {"template": "welcome", "channel": "sms"},
            {"template": "cart_reminder", "journey": "abandoned_cart"},
        ],
        not_sent=["first_order_lastcall"],
        stages=["prospect", "nwe"],
        count={"recommendations": 2},
    )

    assert name_problems(scenario, wanted, definitions) == [
        f"{scenario}:4: expect.messages.0.template: no journey sends 'welcom' — did you mean 'welcome'?",
        f"{scenario}:5: expect.messages.1.channel: 'welcome' is sent by email only",
        f"{scenario}:7: expect.not_sent.0: no journey sends 'first_order_lastcall'"
        " — did you mean 'first_order_last_call'?",
        f"{scenario}:8: expect.stages.1: no stage 'nwe' — did you mean 'new'?",
    ]


def test_an_unquoted_date_or_time_is_taken_as_the_prefix_it_reads_as() -> None:
    wanted = Expectations.model_validate(
        {
            "messages": [
                {"template": "welcome", "at": datetime(2026, 3, 3, 9, 0)},
                {"template": "welcome", "at": datetime(2026, 3, 3).date()},
            ]
        }
    )

    assert [item.at for item in wanted.messages] == ["2026-03-03T09:00:00", "2026-03-03"]
