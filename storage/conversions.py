"""Attribution: which message a purchase converts — last touch, written down once here.

A purchase converts a message when the message went out to that customer (sent, or a later
delivery status: not suppressed, capped, failed, bounced or still in flight), was not a test
send, carries a conversion window (transactional messages never do, see
definition.model.conversion_window), was scheduled before the purchase, and the purchase
falls within its window. When several qualify, the most recent one gets the whole amount.

The credit is written when the purchase is accepted (routing.events); `rebuild` recomputes
every credit from the ledger and the events table, so a credit missed (a database hiccup,
a delivery status that changed later) is one `cyklo report --rebuild` away from right.
The same rule attributes an unsubscribe to a message (reports.funnel).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlmodel import Session, col, select

from definition.events import EventType
from definition.statuses import REACHED_PROVIDER
from storage.models import Conversion, Event, Message, utcnow


@dataclass(frozen=True)
class Touch:
    """A message that may be credited: what the rule needs of a ledger row."""

    message_id: int
    sent_at: datetime
    window: timedelta


def last_touch(touches: Iterable[Touch], at: datetime) -> Touch | None:
    """The message credited with what the customer did `at`: the latest one scheduled before
    it whose window still covers it; None when no window covers it."""
    covering = [touch for touch in touches if touch.sent_at < at <= touch.sent_at + touch.window]
    return max(covering, key=lambda touch: (touch.sent_at, touch.message_id), default=None)


def creditable() -> Any:
    """The ledger rows that can be credited at all (see the module's rule)."""
    return select(Message).where(
        col(Message.conversion_window_seconds).is_not(None),
        col(Message.test).is_(False),
        col(Message.transactional).is_(False),
        col(Message.status).in_(REACHED_PROVIDER),
    )


def touch_of(message: Message) -> Touch:
    assert message.id is not None and message.conversion_window_seconds is not None
    return Touch(message.id, message.scheduled_at, timedelta(seconds=message.conversion_window_seconds))


def amount_of(event: Event) -> float:
    amount = event.properties.get("amount")
    return float(amount) if isinstance(amount, (int, float)) and not isinstance(amount, bool) else 0.0


def credit_purchase(session: Session, event: Event) -> Conversion | None:
    """Credit one accepted purchase to the message that converted it, if any; idempotent."""
    if event.type != EventType.PURCHASE:
        return None
    existing = session.exec(select(Conversion).where(Conversion.event_id == event.event_id)).first()
    if existing is not None:
        return existing
    candidates = session.exec(
        creditable().where(Message.customer_id == event.customer_id, Message.scheduled_at < event.occurred_at)
    ).all()
    by_id = {message.id: message for message in candidates}
    touch = last_touch((touch_of(message) for message in candidates), event.occurred_at)
    if touch is None:
        return None
    conversion = _conversion(by_id[touch.message_id], event)
    session.add(conversion)
    session.commit()
    return conversion


def rebuild(session: Session) -> int:
    """Recompute every credit from the ledger and the events (idempotent); the number of
    conversions. Read customer by customer in order, so memory holds the rows, not a join."""
    messages: dict[str, list[Message]] = defaultdict(list)
    for message in session.exec(creditable().order_by(col(Message.customer_id))):
        messages[message.customer_id].append(message)
    purchases = session.exec(select(Event).where(Event.type == EventType.PURCHASE))
    rows: list[dict[str, Any]] = []
    for event in purchases:
        candidates = messages.get(event.customer_id, ())
        touch = last_touch((touch_of(message) for message in candidates), event.occurred_at)
        if touch is not None:
            message = next(message for message in candidates if message.id == touch.message_id)
            rows.append(_conversion(message, event).model_dump(exclude={"id"}))
    session.execute(delete(Conversion))
    for batch in _batches(rows, 5000):
        session.execute(insert(Conversion), batch)
    session.commit()
    return len(rows)


def _conversion(message: Message, event: Event) -> Conversion:
    assert message.id is not None and message.conversion_window_seconds is not None
    return Conversion(
        event_id=event.event_id,
        message_id=message.id,
        customer_id=event.customer_id,
        journey_id=message.journey_id,
        stage=message.stage,
        step=message.step,
        template=message.template,
        amount=amount_of(event),
        window_seconds=message.conversion_window_seconds,
        sent_at=message.scheduled_at,
        purchased_at=event.occurred_at,
        credited_at=utcnow(),
    )


def _batches(rows: Sequence[dict[str, Any]], size: int) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
