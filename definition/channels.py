"""The channels a journey can send through: one type for the journey model, the send activity,
the ledger and the emulator. What a channel does lives in its adapter (activities/)."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    """A signed JSON POST to the shop's own endpoint."""

    @property
    def reaches_customer(self) -> bool:
        """Whether a person reads it: only then do consent, quiet hours and the frequency cap
        apply. A webhook reaches the shop's systems, which decide for themselves."""
        return self is not Channel.WEBHOOK


CUSTOMER_CHANNELS = frozenset(channel for channel in Channel if channel.reaches_customer)
"""What the frequency cap counts across journeys."""
