"""The support page's words for a stage's steps and a condition: what support reads instead of YAML."""

from __future__ import annotations

import pytest

from definition.conditions import in_words
from definition.words import flow_in_words
from tests.unit.kit import LIFECYCLE, compiled, one_stage

pytestmark = pytest.mark.unit


def test_a_stages_flow_reads_as_sends_and_waits_in_order() -> None:
    journey = compiled(LIFECYCLE).definition

    assert flow_in_words(journey.stages["new"].flow) == (
        "email thank_you (transactional), sms thank_you, wait 2d, then email cross_sell, "
        "wait 7d, then email review_request"
    )
    assert flow_in_words(journey.stages["active"].flow) == (
        "if the previous stage is 'inactive' (email welcome_back) otherwise (email loyalty_welcome), "
        "repeat while in the stage (wait 30d, then email recommendations)"
    )


def test_waits_for_events_splits_and_exits_say_what_happens_on_each_side() -> None:
    flow = [
        {
            "wait_for": {
                "event": "purchase",
                "timeout": "1h",
                "on_timeout": [{"send": {"channel": "email", "template": "nudge"}}],
            }
        },
        {
            "split": {
                "name": "subject",
                "holdout": 10,
                "arms": [
                    {"name": "a", "weight": 1, "flow": [{"send": {"channel": "email", "template": "a"}}]},
                    {"name": "b", "weight": 1, "flow": [{"send": {"channel": "sms", "template": "b"}}]},
                ],
            }
        },
        {"wait": {"until": "10:00"}},
        {"exit": {"reason": "done"}},
    ]
    journey = compiled(one_stage(flow)).definition

    assert flow_in_words(journey.stages["one"].flow) == (
        "wait up to 1h for purchase, if not (email nudge), "
        "split subject: a 45 % (email a); b 45 % (sms b); holdout 10 % (nothing), "
        "wait until 10:00, then exit (done)"
    )
    assert flow_in_words([]) == "nothing"


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        (
            "metrics.orders_365d >= 5 or metrics.spent_365d >= 2000",
            "orders in the last 365 days is at least 5 or spent in the last 365 days is at least 2000",
        ),
        ("previous_stage == 'inactive'", "the previous stage is 'inactive'"),
        ("metrics.points > 0 and not metrics.emails_opened", "points is more than 0 and not (emails opened)"),
        ("event.properties.category in ['shoes', 'bags']", "the event's category is one of 'shoes', 'bags'"),
        # No words for arithmetic or filters: shown whole, as written, never half-translated.
        ("metrics.orders * 2 > 3", "metrics.orders * 2 > 3"),
        ("metrics.favourite_categories | length > 1", "metrics.favourite_categories | length > 1"),
    ],
)
def test_conditions_read_in_words_where_they_can_and_as_written_where_not(condition: str, words: str) -> None:
    assert in_words(condition) == words
