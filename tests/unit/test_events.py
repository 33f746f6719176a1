"""Entry, transitions on events and periods, the dedup window, invalid events, broken conditions."""

from __future__ import annotations

import pytest

from tests.unit.kit import LIFECYCLE, Drive, at, one_stage
from workflows.interface import SEEN_EVENT_IDS, JourneyEvent
from workflows.machine import SKIP_INVALID_EVENTS

pytestmark = pytest.mark.unit


def test_the_first_entry_rule_whose_condition_holds_enters_its_stage() -> None:
    small, big = Drive(LIFECYCLE), Drive(LIFECYCLE)

    assert small.event("purchase", amount=100.0) == "entered new"
    assert big.event("purchase", amount=2500.0) == "entered vip"
    assert small.state.stage_history[0].cause.startswith("purchase (")
    assert big.templates() == ["thank_you", "vip_welcome"]


def test_an_event_no_entry_rule_takes_leaves_the_journey_unstarted() -> None:
    drive = Drive(LIFECYCLE)

    assert drive.event("visit") == "no entry rule matched"
    assert drive.state.stage is None and drive.sent == []


def test_an_event_transition_cancels_the_flow_and_enters_the_next_stage() -> None:
    drive = Drive(LIFECYCLE)
    drive.event("signed_up")
    assert drive.machine.view(drive.now).step == "wait 3d before first_order_nudge"

    assert drive.event("purchase", after="1d", amount=100.0) == "moved to new"
    drive.wait("10d")

    assert drive.stages() == ["prospect", "new"]
    assert drive.state.previous_stage == "prospect"
    assert drive.templates() == ["welcome", "thank_you", "thank_you", "cross_sell", "review_request"]
    assert "first_order_nudge" not in drive.templates()


def test_a_period_transition_counts_from_the_last_event_it_names() -> None:
    drive = Drive(LIFECYCLE)
    drive.event("purchase", amount=100.0)
    drive.event("purchase", after="1d", amount=100.0)  # second order: active
    assert drive.state.stage == "active"
    assert drive.event("purchase", after="30d", amount=100.0) == "metrics updated"
    assert drive.now == at("2026-04-02T11:00:00+02:00")  # the test clock counts 30 × 24 h
    drive.wait("100d")

    inactive = drive.state.stage_history[-1]
    assert (inactive.stage, inactive.cause) == ("inactive", "90d without purchase")
    assert inactive.at == at("2026-07-01T11:00:00+02:00")  # 90 calendar days after the last purchase


def test_the_nearest_wake_up_is_named_in_the_view() -> None:
    drive = Drive(LIFECYCLE)
    drive.event("purchase", amount=100.0)
    drive.wait("10d")  # the flow of `new` is done: only its period transition is left

    view = drive.machine.view(drive.now)
    assert view.next_wake_reason == "move to inactive after 90d without purchase"
    assert view.next_wake_at == at("2026-05-31T10:00:00+02:00")


def test_a_repeated_event_id_is_ignored_within_the_dedup_window() -> None:
    drive = Drive(LIFECYCLE)
    drive.event("purchase", id="e-1", amount=100.0)

    assert drive.event("purchase", id="e-1", amount=100.0) == "duplicate, ignored"
    assert drive.state.metrics.orders == 1
    assert drive.stages() == ["new"]


def test_the_dedup_window_holds_the_last_ids_only() -> None:
    drive = Drive(one_stage([]))
    drive.event("signed_up", id="first")
    for number in range(SEEN_EVENT_IDS):
        drive.inbox.append(drive_event(number))
    drive.settle()

    assert len(drive.state.seen_event_ids) == SEEN_EVENT_IDS
    assert drive.event("signed_up", id="first") == "recorded"
    assert drive.event("signed_up", id="first") == "duplicate, ignored"


def drive_event(number: int) -> JourneyEvent:
    return JourneyEvent(event_id=f"v-{number}", type="visit", occurred_at=at("2026-03-02T10:00:00+01:00"))


def test_an_event_with_unusable_properties_is_recorded_and_skipped() -> None:
    drive = Drive(LIFECYCLE)

    effect = drive.event("purchase", amount="lots", category="shoes")

    assert effect == "skipped: invalid properties (amount)"
    assert drive.state.recent_events[-1].properties == {}
    assert drive.state.stage is None and drive.state.metrics.orders == 0


class Patches:
    """Answers every patch check with `answer` and remembers what was asked."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, patch_id: str) -> bool:
        self.asked.append(patch_id)
        return self.answer


def test_a_run_without_the_patch_uses_the_event_the_lenient_way() -> None:
    patches = Patches(answer=False)
    drive = Drive(LIFECYCLE, patched=patches)

    assert drive.event("purchase", amount="lots") == "entered new"
    assert drive.state.metrics.orders == 1 and drive.state.metrics.total_spent == 0
    assert [asked for asked in patches.asked if asked == SKIP_INVALID_EVENTS] == [SKIP_INVALID_EVENTS]


def test_valid_events_never_ask_for_the_patch() -> None:
    patches = Patches(answer=True)
    drive = Drive(LIFECYCLE, patched=patches)
    drive.event("purchase", amount=10.0)

    assert SKIP_INVALID_EVENTS not in patches.asked


def test_a_broken_condition_is_false_and_leaves_a_warning() -> None:
    journey = one_stage([{"send": {"channel": "email", "template": "a"}}])
    journey["stages"]["one"]["transitions"] = [{"on": "visit", "when": 'metrics.orders > "x"', "to": "two"}]
    drive = Drive(journey)
    drive.event("signed_up")

    assert drive.event("visit") == "recorded"
    assert drive.state.stage == "one"
    assert len(drive.warnings) == 1 and "failed" in drive.warnings[0]


def test_a_broken_branch_condition_takes_the_else_arm() -> None:
    flow = [{"branch": {"if": 'metrics.orders > "x"', "then": [{"exit": None}], "else": []}}]
    drive = Drive(one_stage([*flow, {"send": {"channel": "email", "template": "on"}}]))
    drive.event("signed_up")

    assert drive.templates() == ["on"]
    assert drive.warnings
