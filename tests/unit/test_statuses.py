"""A message's status only moves forward: the rule the webhooks and the send share."""

from __future__ import annotations

import pytest

from definition.statuses import MessageStatus
from storage.ledger import advances

S = MessageStatus


@pytest.mark.parametrize("current", [S.PENDING, S.SENDING, S.RETRYING])
def test_a_message_in_flight_becomes_sent(current: MessageStatus) -> None:
    assert advances(current, S.SENT)


@pytest.mark.parametrize("current", [S.SENT, S.DELIVERED, S.OPENED, S.CLICKED, S.FAILED, S.BOUNCED])
def test_sent_never_undoes_what_the_provider_said_already(current: MessageStatus) -> None:
    assert not advances(current, S.SENT)


def test_webhook_news_moves_up_the_line_and_never_back() -> None:
    line = [S.SENT, S.DELIVERED, S.OPENED, S.CLICKED]
    for lower, higher in zip(line, line[1:], strict=False):
        assert advances(lower, higher)
        assert not advances(higher, lower)


def test_bad_news_stands_against_later_good_news_but_can_follow_it() -> None:
    assert not advances(S.BOUNCED, S.DELIVERED)
    assert advances(S.DELIVERED, S.BOUNCED)
