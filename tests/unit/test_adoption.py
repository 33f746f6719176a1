"""Customers in flight and new versions: adoption at stage entries, renamed and removed
stages, pinned versions, support's upgrade, and what `cyklo publish --plan` says."""

from __future__ import annotations

from typing import Any

import pytest

from definition.adoption import fate, unmapped_stages
from tests.unit.kit import LIFECYCLE, Drive, compiled
from workflows.interface import JourneyEvent, SupportKind
from workflows.machine import ADOPT_AT_STAGE_ENTRY, at_point

pytestmark = pytest.mark.unit

PURCHASE: dict[str, Any] = {"amount": 120.0, "order_id": "o-1"}


def edited(*replacements: tuple[str, str]) -> str:
    text = LIFECYCLE
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


SHORTER_CROSS_SELL = ("      - wait: 2d\n      - send: {channel: email, template: cross_sell", "      - wait: 1d\n      - send: {channel: email, template: cross_sell")
NEW_RENAMED = [
    ("to: new}", "to: first_order}"),
    ("\n  new:\n", "\n  first_order:\n"),
    ("versioning: stage_boundary\n", "versioning: stage_boundary\nrenamed_stages: {new: first_order}\n"),
]


def in_prospect() -> Drive:
    drive = Drive(LIFECYCLE)
    drive.event("signed_up")
    return drive


def test_a_customer_adopts_the_newest_version_when_they_next_enter_a_stage() -> None:
    drive = in_prospect()
    drive.publish(edited(SHORTER_CROSS_SELL))
    drive.wait("1d")
    assert drive.state.version == 1, "no stage entered yet: the wait in prospect runs on version 1"

    drive.event("purchase", **PURCHASE)
    drive.wait("3d")

    assert drive.versions() == [1, 2]
    assert drive.state.stage_history[-1].adopted_from == 1
    assert drive.templates() == ["welcome", "thank_you", "thank_you", "cross_sell"]
    thank_you, cross_sell = drive.sent[1][0], drive.sent[3][0]
    assert (cross_sell - thank_you).days == 1, "the new version's 1 day, not the old 2"
    assert drive.state.metrics.orders == 1, "what the customer did is kept"


def test_events_after_the_entering_one_run_on_the_adopted_version() -> None:
    drive = in_prospect()
    drive.publish(edited(*NEW_RENAMED))
    drive.wait("1h")

    drive.inbox.append(drive_event("purchase", "p-1", drive))
    drive.inbox.append(drive_event("email_opened", "o-1", drive))
    drive.settle()

    assert drive.state.stage == "first_order"
    assert [event.effect for event in drive.state.recent_events[-2:]] == ["moved to new", "recorded"]


def drive_event(type: str, event_id: str, drive: Drive) -> JourneyEvent:
    properties = PURCHASE if type == "purchase" else {}
    return JourneyEvent(event_id=event_id, type=type, occurred_at=drive.now, properties=properties)


def test_a_renamed_stage_is_entered_under_its_new_name() -> None:
    drive = in_prospect()
    drive.publish(edited(*NEW_RENAMED))
    drive.wait("1h")

    assert drive.event("purchase", **PURCHASE) == "moved to new"

    entered = drive.state.stage_history[-1]
    assert (entered.stage, entered.version, drive.state.stage) == ("first_order", 2, "first_order")
    assert "new is first_order in version 2" in entered.cause
    assert drive.templates()[-2:] == ["thank_you", "thank_you"]


def test_a_removed_stage_that_says_exit_ends_the_journey_of_a_customer_bound_for_it() -> None:
    drive = in_prospect()
    gone = [
        ("      - {on: purchase, to: new}\n", ""),
        ("  - {on: purchase, to: new}\n", "  - {on: purchase, to: active}\n"),
        ("versioning: stage_boundary\n", "versioning: stage_boundary\nremoved_stages: {new: exit}\n"),
    ]
    text = LIFECYCLE
    for old, new in gone:
        text = text.replace(old, new, 1)
    start = text.index("\n  new:\n")
    text = text[:start] + text[text.index("\n  active:\n") :]
    drive.publish(text)
    drive.wait("1h")

    drive.event("purchase", **PURCHASE)

    assert drive.state.exited == "stage new removed in version 2"
    assert drive.templates() == ["welcome"], "nothing of the removed stage is sent"


def test_a_version_that_does_not_map_a_stage_is_not_guessed_at() -> None:
    drive = in_prospect()
    drive.publish(edited(*NEW_RENAMED[:2]))  # renamed, without saying so
    drive.wait("1h")

    drive.event("purchase", **PURCHASE)

    assert (drive.state.stage, drive.state.version) == ("new", 1)
    assert drive.warnings == [
        "version 2 of lifecycle has no stage 'new' and does not map it: the customer stays on version 1"
    ]


def test_a_pinned_version_is_not_adopted_by_customers_in_flight() -> None:
    drive = in_prospect()
    drive.publish(edited(SHORTER_CROSS_SELL, ("versioning: stage_boundary", "versioning: pin")))
    drive.wait("1h")

    drive.event("purchase", **PURCHASE)

    assert drive.versions() == [1, 1]


def test_a_history_from_before_adoption_never_asks_for_a_newer_version() -> None:
    asked: list[str] = []

    def before_adoption(patch_id: str) -> bool:
        asked.append(patch_id)
        return False

    drive = Drive(LIFECYCLE, patched=before_adoption)
    drive.event("signed_up")
    drive.publish(edited(SHORTER_CROSS_SELL))
    drive.wait("1h")

    drive.event("purchase", **PURCHASE)

    assert drive.versions() == [1, 1]
    assert asked == [at_point(ADOPT_AT_STAGE_ENTRY, 1), at_point(ADOPT_AT_STAGE_ENTRY, 2)], "asked at each entry, told no"


def test_support_upgrade_goes_on_from_the_same_step_on_the_newest_version() -> None:
    drive = in_prospect()
    assert drive.support(SupportKind.UPGRADE) == "already on the newest version (v1)"
    drive.publish(edited(("template: first_order_nudge, conversion_window: 7d}", "template: first_order_nudge}")))
    waiting_until = drive.state.timer

    assert drive.support(SupportKind.UPGRADE, reason="new nudge") is None

    assert (drive.state.stage, drive.state.version, drive.state.pc) == ("prospect", 2, 1)
    assert drive.state.timer == waiting_until, "the wait keeps its end"
    assert drive.templates() == ["welcome"], "nothing already sent is sent again"
    assert drive.state.stage_history[-1].cause == "upgraded to version 2 by Ewa"
    assert drive.state.support_actions[-1].reason == "new nudge (to version 2)"
    drive.wait("3d")
    assert drive.templates() == ["welcome", "first_order_nudge"]


def test_support_upgrade_starts_the_stage_again_when_the_step_is_gone() -> None:
    drive = in_prospect()
    drive.publish(edited(("      - wait: 3d\n      - send: {channel: email, template: first_order_nudge, conversion_window: 7d}\n", "")))

    assert drive.support(SupportKind.UPGRADE) is None

    assert drive.state.stage_entries == 2
    assert drive.templates() == ["welcome", "welcome"], "the stage's flow ran again from its first step"


def test_upgrade_is_refused_when_the_newest_version_loses_the_customers_stage() -> None:
    drive = Drive(LIFECYCLE)
    drive.event("purchase", **PURCHASE)
    drive.publish(edited(*NEW_RENAMED[:2]))

    refusal = drive.support(SupportKind.UPGRADE)

    assert refusal == (
        "version 2 has no stage 'new' and does not say where its customers go (renamed_stages or "
        "removed_stages): publish a version that does"
    )


def test_what_the_plan_says_happens_to_each_stage() -> None:
    v1 = compiled(LIFECYCLE).definition
    renamed = compiled(edited(*NEW_RENAMED)).definition
    pinned = compiled(edited(("versioning: stage_boundary", "versioning: pin"))).definition

    assert unmapped_stages(v1, compiled(edited(*NEW_RENAMED[:2])).definition) == ["new"]
    assert unmapped_stages(v1, renamed) == []
    assert fate("prospect", 1, renamed, 2) == "adopt v2 at their next stage entry"
    assert fate("new", 1, renamed, 2) == (
        "keep v1's new until they leave it, then adopt v2 "
        "(mapped: new → first_order; `cyklo act upgrade` makes one go to first_order now)"
    )
    assert fate("new", 1, pinned, 2) == "stay on v1: v2 says `versioning: pin`"
    assert fate("new", 2, renamed, 2) == "already on v2"


def test_a_period_transition_and_a_support_move_are_stage_entries_too() -> None:
    drive = Drive(LIFECYCLE)
    drive.event("purchase", **PURCHASE)
    drive.publish(edited(SHORTER_CROSS_SELL))
    drive.wait("91d")
    assert (drive.state.stage, drive.state.version) == ("inactive", 2), "90 days without a purchase"

    drive.publish(edited(SHORTER_CROSS_SELL, ("template: we_miss_you, conversion_window: 7d}", "template: we_miss_you}")))
    assert drive.support(SupportKind.MOVE_TO, stage="active") is None

    assert drive.versions() == [1, 2, 3]
    assert [(entry.entry, entry.stage, entry.previous_stage, entry.version) for entry in drive.entries] == [
        (1, "new", None, 1),
        (2, "inactive", "new", 1),
        (3, "active", "inactive", 2),
    ], "each entry is recorded with the version it happened on"


def test_a_run_replayed_from_before_adoption_adopts_at_its_next_live_stage_entry() -> None:
    """Temporal keeps a patch's first answer for the run: the entries already in the history
    say no, and the next one, live, says yes — because each entry asks under its own id."""
    in_history = {at_point(ADOPT_AT_STAGE_ENTRY, 1)}
    answers: dict[str, bool] = {}

    def remembered(patch_id: str) -> bool:
        return answers.setdefault(patch_id, patch_id not in in_history)

    drive = Drive(LIFECYCLE, patched=remembered)
    drive.event("signed_up")
    drive.publish(edited(SHORTER_CROSS_SELL))
    drive.wait("1h")

    drive.event("purchase", **PURCHASE)

    assert drive.versions() == [1, 2]
