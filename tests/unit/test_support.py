"""Support actions: what each does to the machine, and when each is refused."""

from __future__ import annotations

import pytest

from tests.unit.kit import LIFECYCLE, Drive, at, compiled, one_stage
from workflows.interface import JourneyEvent, JourneyState, SendOutcome, SupportAction, SupportKind
from workflows.machine import CheckVersion, Done, Machine, SendMessage

pytestmark = pytest.mark.unit


def signed_up() -> Drive:
    drive = Drive(LIFECYCLE)
    drive.event("signed_up")
    return drive


def test_a_paused_journey_sends_nothing_until_resumed_then_catches_up() -> None:
    drive = signed_up()

    assert drive.support(SupportKind.PAUSE, reason="customer called") is None
    drive.wait("5d")
    assert drive.templates() == ["welcome"]
    assert drive.machine.view(drive.now).next_wake_reason == "paused by Ewa"
    assert drive.support(SupportKind.PAUSE) == "already paused by Ewa"

    assert drive.support(SupportKind.RESUME, by="Olek") is None

    assert drive.templates() == ["welcome", "first_order_nudge"]
    assert [(record.action, record.by) for record in drive.state.support_actions] == [
        ("pause", "Ewa"),
        ("resume", "Olek"),
    ]
    assert drive.support(SupportKind.RESUME) == "not paused"


def test_skip_wait_ends_the_running_wait_now() -> None:
    drive = signed_up()
    drive.wait("1h")

    assert drive.support(SupportKind.SKIP_WAIT) is None

    assert drive.sent[-1] == (at("2026-03-02T11:00:00+01:00"), "first_order_nudge")
    assert drive.state.timer is not None and drive.state.timer.reason == "wait (prospect/3)"


def test_skip_wait_runs_a_wait_for_timeout_flow_now() -> None:
    flow = [
        {
            "wait_for": {
                "event": "visit",
                "timeout": "7d",
                "on_timeout": [{"send": {"channel": "email", "template": "late"}}],
            }
        }
    ]
    drive = Drive(one_stage(flow))
    drive.event("signed_up")

    assert drive.support(SupportKind.SKIP_WAIT) is None

    assert drive.templates() == ["late"]
    assert drive.state.waiting_for is None


def test_skip_wait_is_refused_when_nothing_waits_or_for_quiet_hours() -> None:
    drive = Drive(one_stage([{"send": {"channel": "email", "template": "a"}}]))
    drive.event("signed_up")
    assert drive.support(SupportKind.SKIP_WAIT) == "the journey is not waiting: nothing to skip"

    night = Drive(LIFECYCLE, start="2026-03-02T23:00:00+01:00")
    night.event("signed_up")
    assert night.support(SupportKind.SKIP_WAIT) == (
        "the next message waits for the end of quiet hours, a send rule that is not skipped"
    )


def test_move_to_enters_the_stage_and_runs_its_flow() -> None:
    drive = signed_up()

    assert drive.support(SupportKind.MOVE_TO, stage="vip", reason="big order by phone") is None

    assert drive.stages() == ["prospect", "vip"]
    assert drive.state.stage_history[-1].cause == "moved by Ewa"
    assert drive.state.support_actions[-1].reason == "big order by phone (to vip)"
    assert drive.templates() == ["welcome", "vip_welcome"]
    assert drive.machine.entered == ["prospect", "vip"], "the workflow publishes every stage entered"


def test_move_to_an_unknown_stage_is_refused_with_the_stages() -> None:
    drive = signed_up()

    refusal = drive.support(SupportKind.MOVE_TO, stage="gold")

    assert refusal == "unknown stage 'gold': use one of prospect, new, active, vip, inactive"


def test_a_move_while_a_message_is_being_sent_starts_the_new_stage_from_its_first_step() -> None:
    machine = Machine(JourneyState(instance="i"), workflow_id="w", journey_id="lifecycle", customer_id="c-1")
    now = at("2026-03-02T10:00:00+01:00")
    machine.load(compiled(LIFECYCLE), version=1, timezone="Europe/Warsaw")
    check = machine.turn([JourneyEvent(event_id="e-1", type="signed_up", occurred_at=now)], now)
    assert isinstance(check, CheckVersion)
    machine.adopt(None, 1, now)
    send = machine.turn([], now)
    assert isinstance(send, SendMessage)

    machine.support(SupportKind.MOVE_TO, SupportAction(by="Ewa", stage="inactive"), now)
    machine.sent(send, SendOutcome(message_id=1, status="sent"), now)

    assert (machine.state.stage, machine.state.pc) == ("inactive", 0)
    assert [message.template for message in machine.state.messages] == ["welcome"]


def test_exit_ends_the_journey_and_every_later_action_is_refused() -> None:
    drive = signed_up()

    assert drive.support(SupportKind.EXIT, reason="asked to stop") is None

    assert drive.effect == Done("exited by Ewa: asked to stop")
    for kind in SupportKind:
        assert drive.support(kind, stage="new") == "the journey has ended (exited by Ewa: asked to stop)"


def test_support_waits_until_the_journey_is_loaded() -> None:
    machine = Machine(JourneyState(instance="i"), workflow_id="w", journey_id="lifecycle", customer_id="c-1")

    assert machine.refusal(SupportKind.PAUSE, SupportAction(by="Ewa")) == (
        "the journey is starting: try again in a moment"
    )


def test_a_database_that_does_not_answer_reads_as_a_sentence_with_the_fix() -> None:
    import psycopg
    from sqlalchemy.exc import OperationalError

    from process.errors import database_unreachable, unexpected

    refused = psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 5499 failed: Connection refused'
    )
    message = database_unreachable(OperationalError("SELECT 1", {}, refused))

    assert message == (
        'the database does not answer (connection failed: connection to server at "127.0.0.1", port 5499 '
        "failed: Connection refused): check CYKLO_DATABASE_URL and that the server is up"
    )
    assert "OperationalError" not in message and "sqlalche.me" not in message
    assert unexpected(KeyError()) == "an unexpected error (unexpected: please report it with the command you ran)"


def test_a_problem_quoting_a_key_with_a_line_break_stays_one_line() -> None:
    from pathlib import Path

    from definition.problems import Problem

    text = str(Problem(Path("journeys/promo.yaml"), 4, "one step per '- ' item, but this one has a\nb, c\u2028d"))

    assert text.splitlines() == [text]
    assert text.endswith("but this one has a\\nb, c\\u2028d")
