"""Attribution's rule (last touch within the message's window) and the report's periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from definition.model import Journey, SendSpec, conversion_window
from reports.funnel import Period, step_of
from storage.conversions import Touch, last_touch

pytestmark = pytest.mark.unit

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def touch(message_id: int, hours_after_monday: float, window_hours: float) -> Touch:
    return Touch(message_id, MONDAY + timedelta(hours=hours_after_monday), timedelta(hours=window_hours))


def test_the_most_recent_message_whose_window_covers_the_purchase_gets_it() -> None:
    welcome, nudge = touch(1, 0, 72), touch(2, 24, 72)

    assert last_touch([welcome, nudge], MONDAY + timedelta(hours=30)) == nudge
    assert last_touch([nudge, welcome], MONDAY + timedelta(hours=12)) == welcome, "nudge was not sent yet"


def test_a_later_message_whose_window_has_ended_leaves_the_credit_to_an_earlier_one() -> None:
    long_window, short_window = touch(1, 0, 240), touch(2, 24, 1)

    assert last_touch([long_window, short_window], MONDAY + timedelta(hours=30)) == long_window


def test_a_purchase_at_the_send_itself_or_after_every_window_is_nobodys() -> None:
    welcome = touch(1, 0, 72)

    assert last_touch([welcome], MONDAY) is None, "a purchase the message cannot have caused"
    assert last_touch([welcome], MONDAY + timedelta(hours=72)) == welcome, "the window's end is in it"
    assert last_touch([welcome], MONDAY + timedelta(hours=72, seconds=1)) is None
    assert last_touch([], MONDAY) is None


def test_a_step_without_a_window_takes_the_journeys_and_transactional_never_has_one() -> None:
    journey = Journey.model_validate(
        {
            "journey": "j",
            "name": "J",
            "conversion_window": "1d",
            "entry": [{"on": "signed_up", "to": "s"}],
            "stages": {"s": {}},
        }
    )
    own = SendSpec.model_validate({"channel": "email", "template": "a", "conversion_window": "3d"})
    plain = SendSpec.model_validate({"channel": "email", "template": "a"})
    receipt = SendSpec.model_validate(
        {"channel": "email", "template": "a", "transactional": True, "conversion_window": "3d"}
    )

    assert conversion_window(journey, own) == timedelta(days=3)
    assert conversion_window(journey, plain) == timedelta(days=1)
    assert conversion_window(journey, receipt) is None
    assert conversion_window(journey.model_copy(update={"conversion_window": None}), plain) is None


def test_a_period_of_days_includes_the_until_day_whole() -> None:
    period = Period.of(date(2026, 3, 1), date(2026, 3, 31))

    assert (period.since, period.until) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert period.holds(datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    assert not period.holds(datetime(2026, 4, 1, tzinfo=UTC))
    assert Period.of(None, datetime(2026, 3, 5, 12, 0)).until == datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def test_the_iterations_of_a_repeated_step_are_one_step() -> None:
    assert step_of("active/1/flow/1#3") == "active/1/flow/1"
    assert step_of("prospect/0") == "prospect/0"
