"""Every row of the default lifecycle journey (shared/DESIGN.md), simulated end to end.

Ala signs up on Monday 2 March 2026 at 10:00 in Warsaw unless a test says otherwise.
"""

from __future__ import annotations

import base64
import json
import re
from itertools import takewhile
from pathlib import Path
from typing import Any

from sqlmodel import select

from emulator.server import ProviderEmulator
from storage.database import session_for
from storage.models import StageEntry
from tests.conftest import make_scenario, messages, run, sent, stages


def purchase(at: str, event_id: str, amount: float = 250.0, category: str = "shoes") -> dict[str, object]:
    return {
        "at": at,
        "type": "purchase",
        "id": event_id,
        "properties": {"order_id": f"o-{event_id}", "amount": amount, "category": category},
    }


SIGNED_UP = {"at": "0s", "type": "signed_up"}


async def test_prospect_gets_welcome_then_nudge_after_3_days_then_last_call_sms_after_7_more() -> None:
    result = await run(make_scenario(SIGNED_UP, until="60d"))

    assert stages(result) == [("2026-03-02 10:00", "prospect")]
    assert sent(result) == [
        ("2026-03-02 10:00", "email", "welcome"),
        ("2026-03-05 10:00", "email", "first_order_nudge"),
        ("2026-03-12 10:00", "sms", "first_order_last_call"),
    ]


async def test_prospect_last_call_sms_is_suppressed_without_sms_consent(emulator: ProviderEmulator) -> None:
    result = await run(
        make_scenario(SIGNED_UP, until="11d", consents={"email": True, "sms": False}), emulator=emulator
    )

    last_call = [entry for entry in messages(result) if entry.template == "first_order_last_call"]
    assert [(entry.status, entry.detail) for entry in last_call] == [
        ("suppressed", "no marketing consent for sms")
    ]
    assert emulator.messages("sms") == []


async def test_first_purchase_thanks_at_once_cross_sells_after_2_days_and_asks_for_review_after_7_more(
    emulator: ProviderEmulator,
) -> None:
    result = await run(make_scenario(SIGNED_UP, purchase("1d", "e-1"), until="20d"), emulator=emulator)

    assert stages(result) == [("2026-03-02 10:00", "prospect"), ("2026-03-03 10:00", "new")]
    assert sent(result) == [
        ("2026-03-02 10:00", "email", "welcome"),
        ("2026-03-03 10:00", "email", "thank_you"),
        ("2026-03-03 10:00", "sms", "thank_you"),
        ("2026-03-05 10:00", "email", "cross_sell"),
        ("2026-03-12 10:00", "email", "review_request"),
    ]
    thank_you = next(
        entry for entry in messages(result) if entry.template == "thank_you" and entry.channel == "email"
    )
    assert thank_you.status == "sent"
    review = [message for message in emulator.messages("email") if "score=10" in (message.html or "")]
    assert len(review) == 1, "the review request carries an NPS scale 0-10"


async def test_second_purchase_makes_customer_active_with_loyalty_welcome_and_monthly_recommendations() -> (
    None
):
    result = await run(
        make_scenario(purchase("0s", "e-1"), purchase("20d", "e-2", amount=100.0), until="95d")
    )

    assert stages(result)[:2] == [("2026-03-02 10:00", "new"), ("2026-03-22 10:00", "active")]
    active = [item for item in sent(result) if item[0] >= "2026-03-22"]
    assert active[:3] == [
        ("2026-03-22 10:00", "email", "loyalty_welcome"),
        ("2026-04-21 10:00", "email", "recommendations"),
        ("2026-05-21 10:00", "email", "recommendations"),
    ]
    assert result.journeys["lifecycle"].metrics["points"] == 350


async def test_five_orders_within_a_year_make_a_vip() -> None:
    orders = [purchase(f"{day}d", f"e-{day}", amount=100.0) for day in (0, 5, 10, 15, 20)]
    result = await run(make_scenario(*orders, until="21d"))

    assert [stage for _, stage in stages(result)] == ["new", "active", "vip"]
    assert ("2026-03-22 10:00", "email", "vip_welcome") in sent(result)


async def test_2000_pln_within_a_year_make_a_vip_straight_from_new() -> None:
    result = await run(
        make_scenario(purchase("0s", "e-1", amount=1500.0), purchase("10d", "e-2", amount=600.0))
    )

    assert [stage for _, stage in stages(result)] == ["new", "vip"]
    assert ("2026-03-12 10:00", "email", "vip_welcome") in sent(result)


async def test_90_days_without_purchase_start_reactivation_and_points_expiry_warning() -> None:
    result = await run(make_scenario(purchase("0s", "e-1", amount=250.0), until="400d"))

    assert stages(result) == [("2026-03-02 10:00", "new"), ("2026-05-31 10:00", "inactive")]
    inactive = [item for item in sent(result) if item[0] >= "2026-05-31"]
    assert inactive == [
        ("2026-05-31 10:00", "email", "we_miss_you"),
        ("2026-06-07 10:00", "email", "comeback_offer"),
        ("2026-06-21 10:00", "email", "why_did_you_leave"),
        ("2027-02-16 10:00", "email", "points_expiring"),
    ]


async def test_purchase_after_inactivity_returns_to_active_with_welcome_back() -> None:
    result = await run(make_scenario(purchase("0s", "e-1"), purchase("100d", "e-2"), until="101d"))

    assert [stage for _, stage in stages(result)] == ["new", "inactive", "active"]
    templates = [template for _, _, template in sent(result)]
    assert templates[-1] == "welcome_back"
    assert "loyalty_welcome" not in templates


async def test_abandoned_cart_without_purchase_gets_one_reminder_an_hour_later_with_a_unique_code(
    emulator: ProviderEmulator,
) -> None:
    carts = [
        {"at": "0s", "type": "cart_abandoned", "properties": {"cart_id": "k-1", "value": 199.0}},
        {"at": "2d", "type": "cart_abandoned", "properties": {"cart_id": "k-2", "value": 80.0}},
    ]
    result = await run(make_scenario(*carts, until="3d"), emulator=emulator)

    assert [item for item in sent(result) if item[2] == "cart_reminder"] == [
        ("2026-03-02 11:00", "email", "cart_reminder"),
        ("2026-03-04 11:00", "email", "cart_reminder"),
    ]
    reminders = [message for message in emulator.messages("email") if message.custom_args]
    codes = {code for message in reminders for code in re.findall(r"CYK-[0-9A-F]{8}", message.text or "")}
    assert len(reminders) == 2
    assert len(codes) == 2, f"each reminder carries its own code, got {codes}"


async def test_purchase_within_an_hour_of_abandoning_the_cart_means_no_reminder() -> None:
    result = await run(
        make_scenario(
            {"at": "0s", "type": "cart_abandoned", "properties": {"cart_id": "k-1"}},
            purchase("30m", "e-1"),
            until="2d",
        )
    )

    assert [entry for entry in messages(result, "abandoned_cart")] == []
    assert result.journeys["abandoned_cart"].stage == "bought"


async def test_a_first_order_of_2000_pln_makes_a_vip_at_once_with_its_order_confirmation() -> None:
    result = await run(make_scenario(purchase("0s", "e-1", amount=2500.0), until="3d"))

    assert [stage for _, stage in stages(result)] == ["vip"]
    assert sent(result) == [
        ("2026-03-02 10:00", "email", "thank_you"),
        ("2026-03-02 10:00", "email", "vip_welcome"),
    ]


async def test_a_purchase_while_the_cart_reminder_waits_for_quiet_hours_cancels_it() -> None:
    result = await run(
        make_scenario(
            {"at": "0s", "type": "cart_abandoned", "properties": {"cart_id": "k-1"}},
            purchase("2h30m", "e-1"),
            start="2026-03-02T20:30:00+01:00",
            until="2d",
        )
    )

    assert messages(result, "abandoned_cart") == []
    assert result.journeys["abandoned_cart"].stage == "bought"


async def test_a_sign_up_is_one_workflow_task_with_one_patch_and_its_welcome_records_the_entry(
    tmp_path: Path,
) -> None:
    """What a sign-up writes to Temporal is most of what it costs: one workflow task holding
    one patch marker for every change the run began with, a local activity for the
    definition, the stage's search attributes, the welcome sent by a local activity (no
    activity task, no second workflow task) that also records the stage entry, and the timer."""
    database_url = f"sqlite:///{tmp_path}/cyklo.db"
    result = await run(make_scenario(SIGNED_UP, until="1d"), record_histories=True, database_url=database_url)

    assert sent(result) == [("2026-03-02 10:00", "email", "welcome")]
    lifecycle = next(
        events
        for events in (json.loads(history)["events"] for history in result.histories)
        if _journey_of(events[0]) == "lifecycle"
    )
    until_asleep = [
        event["eventType"].removeprefix("EVENT_TYPE_")
        for event in takewhile(lambda event: event["eventType"] != "EVENT_TYPE_TIMER_FIRED", lifecycle)
    ]
    assert until_asleep == [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_EXECUTION_SIGNALED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "MARKER_RECORDED",  # the patch generation the run began with
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",  # Temporal's TemporalChangeVersion for it
        "MARKER_RECORDED",  # prepare_journey
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",  # the stage
        "MARKER_RECORDED",  # the welcome's send
        "TIMER_STARTED",
    ]
    markers = [
        event["markerRecordedEventAttributes"]["markerName"]
        for event in lifecycle[: len(until_asleep)]
        if event["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
    ]
    assert markers == ["core_patch", "core_local_activity", "core_local_activity"]
    with session_for(database_url) as session:
        entries = session.exec(select(StageEntry)).all()
    assert [(row.journey_id, row.entry, row.stage, row.previous_stage) for row in entries] == [
        ("lifecycle", 1, "prospect", None)
    ]


def _journey_of(started: dict[str, Any]) -> str:
    field = started["workflowExecutionStartedEventAttributes"]["searchAttributes"]["indexedFields"]["JourneyId"]
    return str(json.loads(base64.b64decode(field["data"])))
