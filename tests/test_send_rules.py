"""Send rules: quiet hours, frequency cap, consent, duplicates, provider failures, long life."""

from __future__ import annotations

from datetime import datetime

from emulator.server import ProviderEmulator
from tests.conftest import make_scenario, messages, run, sent
from tests.test_lifecycle_journey import SIGNED_UP, purchase


def _minute(moment: datetime) -> str:
    """Simulated time to the minute: the test server's clock runs on while a step executes."""
    return moment.strftime("%Y-%m-%dT%H:%M%z")


async def test_marketing_message_due_at_2230_goes_out_at_nine_local_time() -> None:
    result = await run(make_scenario(SIGNED_UP, start="2026-03-02T22:30:00+01:00", until="4d"))

    assert sent(result)[:2] == [
        ("2026-03-03 09:00", "email", "welcome"),
        ("2026-03-06 09:00", "email", "first_order_nudge"),
    ]
    assert _minute(result.timeline[0].at) == "2026-03-02T22:30+0100"
    # The funnel tells the held welcome from the nudge, due at nine (3 days after it) and sent on time.
    [funnel] = result.funnels
    held = {step.template: (step.sent, step.quiet_hours_held) for step in funnel.steps}
    assert held["welcome"] == (1, 1)
    assert held["first_order_nudge"] == (1, 0)


async def test_quiet_hours_end_at_nine_local_time_across_the_spring_dst_change() -> None:
    # Summer time starts in Poland at 02:00 on Sunday 29 March 2026.
    result = await run(make_scenario(SIGNED_UP, start="2026-03-28T22:30:00+01:00", until="4d"))

    welcome, nudge = messages(result)[:2]
    assert _minute(welcome.at) == "2026-03-29T09:00+0200"
    assert _minute(nudge.at) == "2026-04-01T09:00+0200"


async def test_quiet_hours_follow_the_customer_time_zone() -> None:
    # 22:30 in Warsaw is 16:30 in New York: no reason to wait.
    result = await run(
        make_scenario(SIGNED_UP, start="2026-03-02T22:30:00+01:00", until="1d", timezone="America/New_York")
    )

    assert _minute(messages(result)[0].at) == "2026-03-02T16:30-0500"


async def test_transactional_thank_you_goes_at_once_during_quiet_hours_marketing_sms_waits() -> None:
    result = await run(make_scenario(purchase("0s", "e-1"), start="2026-03-02T23:00:00+01:00", until="1d"))

    assert sent(result)[:2] == [
        ("2026-03-02 23:00", "email", "thank_you"),
        ("2026-03-03 09:00", "sms", "thank_you"),
    ]


async def test_fourth_marketing_message_in_7_days_is_capped_transactional_is_exempt(
    emulator: ProviderEmulator,
) -> None:
    cart = {"type": "cart_abandoned", "properties": {"cart_id": "k"}}
    result = await run(
        make_scenario(
            SIGNED_UP, {**cart, "at": "1d"}, {**cart, "at": "2d"}, purchase("4d", "e-1"), until="5d"
        ),
        emulator=emulator,
    )

    outcome = [(entry.template, entry.channel, entry.status) for entry in messages(result)]
    assert outcome == [
        ("welcome", "email", "sent"),
        ("cart_reminder", "email", "sent"),
        ("cart_reminder", "email", "sent"),
        ("first_order_nudge", "email", "capped"),
        ("thank_you", "email", "sent"),
        ("thank_you", "sms", "capped"),
    ]
    assert len(emulator.messages("email")) == 4
    assert emulator.messages("sms") == []


async def test_message_without_consent_is_recorded_suppressed_and_never_sent(
    emulator: ProviderEmulator,
) -> None:
    result = await run(
        make_scenario(SIGNED_UP, purchase("1d", "e-1"), until="2d", consents={"email": False, "sms": False}),
        emulator=emulator,
    )

    outcome = [(entry.template, entry.channel, entry.status) for entry in messages(result)]
    assert outcome == [
        ("welcome", "email", "suppressed"),
        ("thank_you", "email", "sent"),
        ("thank_you", "sms", "suppressed"),
    ]
    assert [message.subject for message in emulator.messages()] == [emulator.messages("email")[0].subject]
    [funnel] = result.funnels
    not_sent = {(step.template, step.channel): (step.no_consent, step.suppressed) for step in funnel.steps}
    assert not_sent[("welcome", "email")] == (1, 0)
    assert not_sent[("thank_you", "sms")] == (1, 0)
    assert not_sent[("thank_you", "email")] == (0, 0)


async def test_the_same_purchase_sent_twice_counts_once() -> None:
    result = await run(make_scenario(purchase("1d", "e-1"), purchase("1d1h", "e-1"), until="2d"))

    journey = result.journeys["lifecycle"]
    assert journey.metrics["orders"] == 1
    assert [template for _, _, template in sent(result)].count("thank_you") == 2  # one email, one SMS
    routed = [entry.detail or "" for entry in result.timeline if entry.kind == "event"]
    assert routed[1].endswith("duplicate")


async def test_provider_429_is_retried_after_retry_after_and_then_sent_once(
    emulator: ProviderEmulator,
) -> None:
    emulator.fail_next("email", 429, count=2, retry_after=1)
    result = await run(make_scenario(SIGNED_UP, until="1h"), emulator=emulator)

    assert [(entry.template, entry.status) for entry in messages(result)] == [("welcome", "sent")]
    assert emulator.attempts("email") == 3
    assert len(emulator.messages("email")) == 1


async def test_permanent_provider_rejection_is_recorded_and_the_journey_goes_on(
    emulator: ProviderEmulator,
) -> None:
    emulator.fail_next("sms", 400, code=21610)
    result = await run(make_scenario(purchase("0s", "e-1"), until="3d"), emulator=emulator)

    outcome = [(entry.template, entry.channel, entry.status) for entry in messages(result)]
    assert outcome == [
        ("thank_you", "email", "sent"),
        ("thank_you", "sms", "failed"),
        ("cross_sell", "email", "sent"),
    ]
    failed = messages(result)[1]
    assert failed.detail is not None and "21610" in failed.detail


async def test_continue_as_new_keeps_metrics_stage_and_history() -> None:
    orders = [purchase(f"{day}d", f"e-{day}", amount=50.0) for day in range(8)]
    result = await run(make_scenario(*orders, until="9d"), events_per_run=3)

    journey = result.journeys["lifecycle"]
    assert journey.runs >= 3
    assert journey.metrics["orders"] == 8
    assert journey.metrics["spent_365d"] == 400.0
    assert journey.stage == "vip"
    assert [change.stage for change in journey.stage_history] == ["new", "active", "vip"]
