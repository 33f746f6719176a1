"""A rendered message as a person checks it: subject, text, HTML, and for an SMS its
encoding and segment count. What `cyklo preview --json` prints and the preview page shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from pydantic import BaseModel

from definition.channels import Channel
from definition.sms_text import SmsEncoding, sms_encoding


class MessagePreview(BaseModel):
    subject: str | None
    """Email only."""
    text: str
    """The text part of an email, an SMS's text, a webhook's JSON body."""
    html: str | None
    """Email only."""
    encoding: SmsEncoding | None
    """SMS only: GSM-7, or UCS-2 as soon as one character (any Polish letter) is outside it."""
    segments: int | None
    """SMS only: the parts carriers split it into, and bill."""


def preview_of(channel: Channel, rendered: Mapping[str, str]) -> MessagePreview:
    """The preview of a message rendered by definition.templates.render."""
    match channel:
        case Channel.EMAIL:
            return MessagePreview(
                subject=rendered["subject.txt"],
                text=rendered["txt"],
                html=rendered["html"],
                encoding=None,
                segments=None,
            )
        case Channel.SMS:
            encoding, segments = sms_encoding(rendered["txt"])
            return MessagePreview(
                subject=None, text=rendered["txt"], html=None, encoding=encoding, segments=segments
            )
        case Channel.WEBHOOK:
            return MessagePreview(
                subject=None, text=rendered["json"], html=None, encoding=None, segments=None
            )
        case _:
            assert_never(channel)
