"""Settling messages the ledger records `failed` with outcome unknown, from the providers' records.

The send never resends such a message (at most once); whether the customer got it is for
the provider to say. Delivery webhooks say it for most (see api/webhooks.py); this settles
the rest where a provider lets us ask:

- SMS: Twilio's message list, filtered by the customer's number, our sender and the time of
  the send. A listed message matches when Twilio received it while the send was under way
  (between the ledger row's creation and the moment it was marked unknown, give or take
  clock skew), no other ledger row holds its sid, and its segment count is the one the
  send rendered. The ledger keeps no body or body hash, since the text holds the
  customer's name; when two listed messages fit one row, it stays unknown rather than
  guess. A message Twilio does not list once its queue limit has passed never went out.
- Email: SendGrid's v3 API has no lookup of one message without the paid Email Activity
  add-on, so emails are settled by its event webhook only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlmodel import Session, col, select
from twilio.base.exceptions import TwilioException

from activities.sms import TWILIO_OUTCOMES, twilio_client
from definition.phones import InvalidPhone, normalize_phone
from definition.statuses import MessageStatus
from settings import Settings
from storage import ledger
from storage.database import session_for
from storage.models import Customer, Message, utcnow

CLOCK_SKEW = timedelta(minutes=2)
"""How far Twilio's clock and ours may disagree about when a message arrived."""
TWILIO_QUEUE_LIMIT = timedelta(hours=4)
"""Twilio's longest validity period: a message still queued after it is failed, never sent."""
EMAIL_WEBHOOKS_ONLY = (
    "webhooks only: SendGrid has no per-message lookup without the Email Activity add-on; "
    "its delivered, bounce or dropped event will settle it"
)


class ReconcileError(Exception):
    """Reconciliation cannot ask the provider: missing credentials, or the provider refused."""


@dataclass(frozen=True)
class Listed:
    """A message as Twilio's list shows it: what matching needs."""

    sid: str
    status: str
    received_at: datetime
    segments: int | None
    error_code: int | None


@dataclass(frozen=True)
class Settlement:
    message_id: int
    customer_id: str
    channel: str
    template: str
    sent_at: datetime
    settled: bool
    status: str
    """The ledger's status after reconciliation."""
    note: str


def reconcile(settings: Settings, since: timedelta) -> list[Settlement]:
    """Settle every message that became `failed (outcome unknown)` in the last `since`."""
    with session_for(settings.database_url, read_only=True) as session:
        unknown = ledger.outcome_unknown_since(session, utcnow() - since)
    sms = [message for message in unknown if message.channel == "sms"]
    if sms and not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise ReconcileError(
            f"{len(sms)} SMS need Twilio's message list: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
    results = [
        _still_unknown(message, EMAIL_WEBHOOKS_ONLY) for message in unknown if message.channel == "email"
    ]
    by_customer: dict[str, list[Message]] = {}
    for message in sms:
        by_customer.setdefault(message.customer_id, []).append(message)
    for customer_id, messages in by_customer.items():
        results.extend(_settle_sms(settings, customer_id, messages))
    return sorted(results, key=lambda result: result.sent_at)


def _settle_sms(settings: Settings, customer_id: str, messages: list[Message]) -> list[Settlement]:
    with session_for(settings.database_url, read_only=True) as session:
        customer = session.get(Customer, customer_id)
    if customer is None or not customer.phone:
        return [
            _still_unknown(message, "no phone number on file (erased?) to look up") for message in messages
        ]
    try:
        phone = normalize_phone(customer.phone, settings.default_phone_region)
    except InvalidPhone as problem:
        return [_still_unknown(message, str(problem)) for message in messages]
    now = utcnow()
    listed = _twilio_list(
        settings,
        phone,
        after=min(message.created_at for message in messages) - CLOCK_SKEW,
        before=min(now, max(message.updated_at for message in messages) + TWILIO_QUEUE_LIMIT),
    )
    with session_for(settings.database_url, read_only=True) as session:
        sids = [item.sid for item in listed]
        known = set(
            session.exec(
                select(Message.provider_message_id).where(col(Message.provider_message_id).in_(sids))
            )
        )
    pool = [item for item in listed if item.sid not in known]
    results = []
    for message in sorted(messages, key=lambda found: found.created_at):
        decision = match(message, pool, now)
        if isinstance(decision, Listed):
            pool.remove(decision)
            results.append(_record(settings, message, decision))
        elif decision is None:
            results.append(_record_not_sent(settings, message))
        else:
            results.append(_still_unknown(message, decision))
    return results


def match(message: Message, pool: list[Listed], now: datetime) -> Listed | str | None:
    """The listed message that is this ledger row's, or None when Twilio certainly has none,
    or a note saying why it cannot tell yet."""
    fits = [
        item
        for item in pool
        if message.created_at - CLOCK_SKEW <= item.received_at <= message.updated_at + CLOCK_SKEW
        and (message.sms_segments is None or item.segments in (None, message.sms_segments))
    ]
    if len(fits) == 1:
        return fits[0]
    if fits:
        return f"{len(fits)} messages to this number fit the time of the send: left for a person to decide"
    if now - message.updated_at < TWILIO_QUEUE_LIMIT:
        waited_until = (message.updated_at + TWILIO_QUEUE_LIMIT).strftime("%Y-%m-%d %H:%M UTC")
        return f"Twilio lists none yet (it may still be queued): run again after {waited_until}"
    return None


def _twilio_list(settings: Settings, phone: str, after: datetime, before: datetime) -> list[Listed]:
    client = twilio_client(settings)
    try:
        found = client.messages.list(
            to=phone, from_=settings.sms_from, date_sent_after=after, date_sent_before=before, page_size=100
        )
    except TwilioException as error:
        raise ReconcileError(f"Twilio refused the message list: {_twilio_problem(error)}") from None
    except requests.RequestException as error:
        raise ReconcileError(f"Twilio unreachable: {type(error).__name__}") from None
    return [
        Listed(
            sid=str(item.sid),
            status=str(item.status),
            received_at=item.date_created or item.date_sent,
            segments=_number(item.num_segments),
            error_code=item.error_code,
        )
        for item in found
        if str(item.direction or "").startswith("outbound") and (item.date_created or item.date_sent)
    ]


def _twilio_problem(error: TwilioException) -> str:
    # A refused page raises a bare TwilioException("Unable to fetch page", response): the
    # code and message are in the response's body, not on the exception.
    response = error.args[1] if len(error.args) > 1 else None
    try:
        body = json.loads(response.text) if response is not None else {}
    except (ValueError, AttributeError):
        body = {}
    status = getattr(response, "status_code", None) or getattr(error, "status", "?")
    code = body.get("code") or getattr(error, "code", None) or "-"
    text = body.get("message") or getattr(error, "msg", None) or str(error)
    return f"HTTP {status}, code {code}: {text}"


def _record(settings: Settings, message: Message, listed: Listed) -> Settlement:
    status = TWILIO_OUTCOMES.get(listed.status, MessageStatus.SENT)  # queued, sending…: Twilio took it
    detail = f"twilio {listed.error_code}" if listed.error_code else None

    def apply(session: Session, current: Message) -> None:
        if current.provider_message_id is None:
            current.provider_message_id = listed.sid  # so later status callbacks find it
        ledger.apply_evidence(
            session, current, status, f"reconcile: twilio {listed.status} ({listed.sid})", detail
        )

    return _change(settings, message, apply, f"settled: {status} (Twilio {listed.status}, {listed.sid})")


def _record_not_sent(settings: Settings, message: Message) -> Settlement:
    def apply(session: Session, current: Message) -> None:
        ledger.apply_evidence(
            session, current, MessageStatus.FAILED, "reconcile: Twilio lists no such message", "never sent"
        )

    return _change(settings, message, apply, "settled: failed (Twilio lists no such message: never sent)")


def _change(
    settings: Settings, message: Message, apply: Callable[[Session, Message], None], note: str
) -> Settlement:
    with session_for(settings.database_url) as session:
        current = session.get(Message, message.id)
        assert current is not None
        if not ledger.is_outcome_unknown(current):
            # A webhook settled it while we asked Twilio: its word stands.
            session.rollback()
            return _settlement(current, True, f"settled meanwhile: {current.status}")
        apply(session, current)
        session.commit()
        return _settlement(current, True, note)


def _still_unknown(message: Message, note: str) -> Settlement:
    return _settlement(message, False, f"still unknown: {note}")


def _settlement(message: Message, settled: bool, note: str) -> Settlement:
    assert message.id is not None
    return Settlement(
        message_id=message.id,
        customer_id=message.customer_id,
        channel=message.channel,
        template=message.template,
        sent_at=message.created_at,
        settled=settled,
        status=message.status,
        note=note,
    )


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
