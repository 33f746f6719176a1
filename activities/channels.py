"""The channel registry: every Channel has its adapter, and mypy says so."""

from __future__ import annotations

from typing import assert_never

from activities.adapter import ChannelAdapter
from activities.email import EmailChannel
from activities.sms import SmsChannel
from activities.webhook import WebhookChannel
from definition.channels import Channel

_EMAIL, _SMS, _WEBHOOK = EmailChannel(), SmsChannel(), WebhookChannel()


def adapter_for(channel: Channel) -> ChannelAdapter:
    match channel:
        case Channel.EMAIL:
            return _EMAIL
        case Channel.SMS:
            return _SMS
        case Channel.WEBHOOK:
            return _WEBHOOK
        case _:
            assert_never(channel)
