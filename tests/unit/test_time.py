"""Quiet hours and waits in the customer's time zone, across both DST changes (Europe/Warsaw:
2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00)."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from tests.unit.kit import Drive, at, one_stage
from workflows.interface import SendOutcome

pytestmark = pytest.mark.unit

WELCOME = {"send": {"channel": "email", "template": "welcome"}}


@pytest.mark.parametrize(
    ("signed_up", "sent_local", "sent_utc"),
    [
        # The night DST starts: 09:00 is already summer time.
        ("2026-03-28T22:00:00+01:00", "2026-03-29T09:00:00+02:00", "2026-03-29T07:00:00+00:00"),
        # The night DST ends: 09:00 is winter time again.
        ("2026-10-24T23:30:00+02:00", "2026-10-25T09:00:00+01:00", "2026-10-25T08:00:00+00:00"),
        # After midnight, the same night's end.
        ("2026-03-29T03:30:00+02:00", "2026-03-29T09:00:00+02:00", "2026-03-29T07:00:00+00:00"),
    ],
)
def test_a_message_in_quiet_hours_waits_for_nine_local_across_dst(
    signed_up: str, sent_local: str, sent_utc: str
) -> None:
    drive = Drive(one_stage([WELCOME]), start=signed_up)
    drive.event("signed_up")

    assert drive.sent == []
    assert drive.state.timer is not None
    assert drive.state.timer.at.astimezone(UTC) == at(sent_utc)
    assert drive.state.timer.reason == "quiet hours: welcome waits"
    drive.wait("1d")

    assert drive.sent == [(at(sent_local), "welcome")]
    assert drive.sent[0][0].utcoffset() == at(sent_local).utcoffset()
    # The send says when it was due, for the funnel's "held by quiet hours".
    assert drive.requests[0].request.held_since == at(signed_up)


def test_a_transactional_message_ignores_quiet_hours() -> None:
    flow = [{"send": {"channel": "email", "template": "receipt", "transactional": True}}]
    drive = Drive(one_stage(flow), start="2026-03-28T23:00:00+01:00")
    drive.event("signed_up")

    assert drive.sent == [(at("2026-03-28T23:00:00+01:00"), "receipt")]
    assert drive.requests[0].request.held_since is None


def test_no_quiet_hours_when_the_journey_has_none() -> None:
    drive = Drive(one_stage([WELCOME], quiet_hours=None), start="2026-03-28T23:00:00+01:00")
    drive.event("signed_up")

    assert drive.templates() == ["welcome"]


@pytest.mark.parametrize(
    ("start", "period", "then", "elapsed"),
    [
        ("2026-03-28T10:00:00+01:00", "1d", "2026-03-29T10:00:00+02:00", timedelta(hours=23)),
        ("2026-10-24T10:00:00+02:00", "1d", "2026-10-25T10:00:00+01:00", timedelta(hours=25)),
        # The hours beyond whole days are elapsed time, added after the calendar day.
        ("2026-03-28T10:00:00+01:00", "1d2h", "2026-03-29T12:00:00+02:00", timedelta(hours=25)),
    ],
)
def test_whole_days_keep_the_local_time_across_dst_and_hours_do_not(
    start: str, period: str, then: str, elapsed: timedelta
) -> None:
    drive = Drive(one_stage([{"wait": period}, WELCOME]), start=start)
    drive.event("signed_up")
    drive.wait("2d")

    assert drive.sent == [(at(then), "welcome")]
    assert at(then) - at(start) == elapsed


def test_the_send_outcome_updates_the_time_zone_for_later_quiet_hours() -> None:
    drive = Drive(one_stage([WELCOME, {"wait": "10h"}, {"send": {"channel": "sms", "template": "later"}}]))
    drive.outcome = lambda send: SendOutcome(message_id=1, status="sent", timezone="America/New_York")
    drive.event("signed_up")  # 10:00 in Warsaw, 04:00 in New York; 10h later it is 14:00 there
    drive.wait("1d")

    assert drive.state.timezone == "America/New_York"
    assert drive.sent[1] == (at("2026-03-02T14:00:00-05:00"), "later")
