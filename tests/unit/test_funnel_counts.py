"""The funnel's counting: a known set of ledger outcomes gives exact delivered, opened, clicked,
bounced, capped, failed-by-kind and outcome-unknown counts, and an SMS STOP is credited to the
SMS whose window covers it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from definition.channels import Channel
from definition.statuses import MessageStatus
from reports.funnel import StepFunnel, Unsubscribed, count_reason, count_status, credit_unsubscribes
from storage.conversions import Touch

pytestmark = pytest.mark.unit

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# What became of a step's 14 messages: (status, reason), as the ledger records them.
OUTCOMES: list[tuple[MessageStatus, str | None]] = [
    (MessageStatus.SENT, None),
    (MessageStatus.DELIVERED, None),
    (MessageStatus.DELIVERED, None),
    (MessageStatus.OPENED, None),
    (MessageStatus.CLICKED, None),
    (MessageStatus.BOUNCED, None),
    (MessageStatus.CAPPED, "frequency cap: 3 marketing messages in the 7 days before"),
    (MessageStatus.SUPPRESSED, "no marketing consent for email"),
    (MessageStatus.SUPPRESSED, "suppressed after a hard bounce or spam report"),
    (MessageStatus.FAILED, "400: SendGrid rejected the email: bad address"),
    (MessageStatus.FAILED, "400: SendGrid rejected the email: bad address"),
    (MessageStatus.FAILED, "template error: UndefinedError: 'order' is undefined"),
    (MessageStatus.FAILED, "outcome unknown: read timed out; not resent, to avoid a duplicate"),
    (MessageStatus.SENDING, None),
]


def counted(outcomes: list[tuple[MessageStatus, str | None]]) -> StepFunnel:
    """As journey_funnel counts: by status first, then the messages not sent by their reason."""
    funnel = StepFunnel(stage="welcome", step="welcome/0", template="hello", channel="email")
    for status, _ in outcomes:
        count_status(funnel, status, 1)
    for status, reason in outcomes:
        count_reason(funnel, status, reason)
    return funnel


def test_each_outcome_is_counted_where_it_belongs() -> None:
    funnel = counted(OUTCOMES)

    assert funnel.messages == 14
    # Went out: everything the provider took, the bounce included.
    assert (funnel.sent, funnel.delivered, funnel.opened, funnel.clicked, funnel.bounced) == (6, 4, 2, 1, 1)
    assert (funnel.capped, funnel.no_consent, funnel.suppressed) == (1, 1, 1)
    assert funnel.failed == {"400": 2, "template error": 1}
    assert (funnel.outcome_unknown, funnel.in_flight, funnel.held_out) == (1, 1, 0)


def test_a_repaired_failure_is_counted_by_its_status_not_its_old_reason() -> None:
    repaired = (
        MessageStatus.DELIVERED,
        "repaired by webhook: sendgrid delivered: 250 OK (outcome unknown before)",
    )

    funnel = counted([repaired])

    assert (funnel.sent, funnel.delivered, funnel.outcome_unknown, funnel.failed) == (1, 1, 0, {})


def sms(message_id: int, hours_after_monday: float, template: str) -> tuple[Touch, Unsubscribed]:
    sent_at = MONDAY + timedelta(hours=hours_after_monday)
    where = Unsubscribed("lifecycle", "new", "new/1", template, sent_at)
    return Touch(message_id, sent_at, timedelta(days=7)), where


def test_an_sms_stop_is_credited_to_the_last_sms_whose_window_covers_it() -> None:
    thank_you, last_call = sms(1, 0, "thank_you"), sms(2, 48, "last_call")
    candidates = {("c-ala", "sms"): [thank_you, last_call], ("c-bob", "sms"): [thank_you]}
    stops = [
        ("c-ala", Channel.SMS, MONDAY + timedelta(hours=50)),  # after last_call: its
        ("c-ala", Channel.SMS, MONDAY + timedelta(hours=24)),  # before last_call went out: thank_you's
        ("c-bob", Channel.SMS, MONDAY + timedelta(days=8)),  # after the 7-day window: nobody's
        ("c-ola", Channel.SMS, MONDAY + timedelta(hours=1)),  # never got an SMS: nobody's
        ("c-bob", Channel.EMAIL, MONDAY + timedelta(hours=1)),  # an email unsubscribe: not the SMS's
    ]

    credited = credit_unsubscribes(stops, candidates)

    assert [where.template for where in credited] == ["last_call", "thank_you"]
