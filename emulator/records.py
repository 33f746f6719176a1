"""What the emulator records: the messages it accepted, and the faults it was told to answer with."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from definition.channels import Channel

CHANNELS = (Channel.EMAIL, Channel.SMS)
"""The channels emulated (SendGrid, Twilio); a webhook's receiver is the shop's own."""


def checked_channel(channel: str) -> Channel:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    return Channel(channel)


@dataclass
class RecordedMessage:
    channel: Channel
    provider_id: str
    to: str
    sender: str
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    custom_args: dict[str, str] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    """The HTTP request's headers, credentials redacted. The email's own headers
    (List-Unsubscribe, …) are in `raw["headers"]`, where SendGrid's API puts them."""
    raw: dict[str, Any] = field(default_factory=dict)
    """SendGrid: the JSON body. Twilio: the form, a list where a field repeats."""
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    delivery: str = "delivered"
    """What the provider later says became of it: Twilio's list shows it (deliver_as changes it)."""
    error_code: int | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordedMessage:
        """What `as_json` wrote: the outbox file read back after a restart."""
        return cls(
            **{
                **data,
                "channel": Channel(data["channel"]),
                "received_at": datetime.fromisoformat(data["received_at"]),
            }
        )


@dataclass
class Fault:
    status: int
    count: int
    retry_after: int | None
    code: int | None
