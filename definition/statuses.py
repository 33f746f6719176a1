"""Message statuses in the ledger, and what each means to the send rules and the webhooks."""

from __future__ import annotations

from enum import StrEnum

NO_CONSENT = "no marketing consent"
"""How a suppressed message's reason begins when consent was missing (`… for email`): the
funnel counts these apart from the other suppressions."""


class MessageStatus(StrEnum):
    PENDING = "pending"
    """Claimed by a send attempt that has not yet called the provider."""
    SENDING = "sending"
    """The provider call is under way (or was cut off: outcome unknown)."""
    RETRYING = "retrying"
    """The provider said "not now" (429, 5xx) or could not be reached: the activity retries."""
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    SUPPRESSED = "suppressed"
    CAPPED = "capped"
    FAILED = "failed"
    BOUNCED = "bounced"
    HELD_OUT = "held_out"
    """Not sent: the customer is in the global control group (CYKLO_GLOBAL_HOLDOUT_PERCENT)."""

    @property
    def rank(self) -> int | None:
        """Progress of a message the provider took: webhooks only ever move it up (sent →
        delivered → opened → clicked); None for a status off that line."""
        return _RANK.get(self)

    @property
    def in_flight(self) -> bool:
        return self in (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.RETRYING)

    @property
    def final(self) -> bool:
        """Decided: a send attempt that finds it returns it as it is."""
        return not self.in_flight

    @property
    def reached_provider(self) -> bool:
        """The customer got it, or is getting it: the provider took it."""
        return self in _RANK and self is not MessageStatus.SENDING

    @property
    def undelivered(self) -> bool:
        """Bad news that later good news cannot undo (a late `delivered` after a bounce)."""
        return self in (MessageStatus.FAILED, MessageStatus.BOUNCED)

    @property
    def counts_toward_cap(self) -> bool:
        """What the frequency cap counts: messages that went out, and those in flight, so two
        journeys sending at once cannot both pass the check."""
        return self.reached_provider or self.in_flight


_RANK = {
    MessageStatus.SENDING: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.OPENED: 3,
    MessageStatus.CLICKED: 4,
}

REACHED_PROVIDER = frozenset(status for status in MessageStatus if status.reached_provider)
FINAL = frozenset(status for status in MessageStatus if status.final)
COUNTS_TOWARD_CAP = frozenset(status for status in MessageStatus if status.counts_toward_cap)
