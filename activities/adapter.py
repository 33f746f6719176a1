"""What the send activity needs of a channel: one small protocol, one adapter per channel
(activities/email.py, sms.py, webhook.py), found by `activities.channels.adapter_for`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from settings import Settings
from storage.models import Customer, Message
from workflows.interface import SendRequest


@dataclass(frozen=True)
class Delivery:
    """One rendered message, ready for its provider."""

    request: SendRequest
    message_id: int
    destination: str
    """An email address, an E.164 number or a URL."""
    first_name: str | None
    rendered: Mapping[str, str]
    """The template's parts (definition.templates.parts), rendered."""
    unsubscribe_url: str | None
    """None for transactional messages."""


class ChannelAdapter(Protocol):
    def refusal(self, customer: Customer, transactional: bool) -> str | None:
        """Why this customer must not get the message (no address, suppressed, no marketing
        consent); None if they may. Recorded as `suppressed` with this reason."""
        ...

    def destination(self, customer: Customer, request: SendRequest, settings: Settings) -> str:
        """Where the message goes; InvalidPhone (recorded failed) if the profile's is unusable."""
        ...

    def check(self, message: Message, rendered: Mapping[str, str]) -> str | None:
        """Note on the ledger row what it keeps of the rendered message; say why the message
        is too large to send (a template error), or None."""
        ...

    def deliver(self, delivery: Delivery, settings: Settings) -> str | None:
        """Hand the message to the provider; its id for the message, if it gives one.

        Maps the provider's errors to ProviderRetryable (429, 5xx, never connected),
        ProviderRejected (other 4xx) or ProviderAmbiguous (sent, no answer)."""
        ...
