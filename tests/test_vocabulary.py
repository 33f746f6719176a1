"""The typed vocabulary: message statuses, channels and the events that mean something to the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.channels import adapter_for
from definition.channels import CUSTOMER_CHANNELS, Channel
from definition.events import EventType, Meaning, meaning
from definition.metrics import Metrics
from definition.model import Journey
from definition.statuses import COUNTS_TOWARD_CAP, FINAL, MessageStatus
from definition.templates import parts

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_statuses_know_their_rank_finality_and_what_the_cap_counts() -> None:
    ranked = sorted(
        (status for status in MessageStatus if status.rank is not None), key=lambda s: s.rank or 0
    )

    assert ranked == ["sending", "sent", "delivered", "opened", "clicked"]
    assert FINAL == {
        "sent",
        "delivered",
        "opened",
        "clicked",
        "suppressed",
        "capped",
        "failed",
        "bounced",
        "held_out",
    }
    assert COUNTS_TOWARD_CAP == {"pending", "sending", "retrying", "sent", "delivered", "opened", "clicked"}
    assert {status for status in MessageStatus if status.undelivered} == {"failed", "bounced"}


def test_every_channel_has_an_adapter_and_template_parts_and_only_webhooks_skip_the_customer_rules() -> None:
    for channel in Channel:
        assert adapter_for(channel) is adapter_for(channel) and parts(channel)

    assert CUSTOMER_CHANNELS == {Channel.EMAIL, Channel.SMS}
    assert parts(Channel.WEBHOOK) == ("json",)


def test_events_with_a_meaning_reach_every_journey_and_feed_the_metrics() -> None:
    journey = Journey.model_validate(
        {"journey": "j", "name": "J", "entry": [{"on": "signed_up", "to": "s"}], "stages": {"s": {}}}
    )
    metrics = Metrics()

    metrics.record("purchase", {"amount": 120.5, "category": "shoes"}, NOW + timedelta(days=1), NOW)
    metrics.record("email_opened", {}, NOW, NOW)
    metrics.record("cart_abandoned", {"value": 10}, NOW, NOW)

    assert journey.event_types() == {"signed_up", "purchase", "email_opened", "email_clicked"}
    assert (meaning(EventType.PURCHASE), meaning("email_clicked"), meaning("signed_up")) == (
        Meaning.ORDER,
        Meaning.REACTION,
        None,
    )
    view = metrics.view(NOW)
    assert (view["orders"], view["points"], view["emails_opened"]) == (1, 120, 1)
    assert metrics.last_purchase_at == NOW, "an order stamped in the future counts from now"
