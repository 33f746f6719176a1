"""Attribution: which message a purchase converts — last touch, written down once here.

A purchase converts a message when the message went out to that customer (sent, or a later
delivery status: not suppressed, capped, failed, bounced or still in flight), was not a test
send, carries a conversion window (transactional messages never do, see
definition.model.conversion_window), was scheduled before the purchase, and the purchase
falls within its window. When several qualify, the most recent one gets the whole amount.

The credit is written with the purchase's record (routing.events) and forgotten with it if the
purchase cannot be delivered; `rebuild` recomputes every credit from the ledger and the events
table, so a credit missed (a database hiccup, a delivery status that changed later) is one
`cyklo report --rebuild` away from right.
The same rule attributes an unsubscribe to a message (reports.funnel).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy import select as sa_select
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


CREDITABLE = (
    col(Message.conversion_window_seconds).is_not(None),
    col(Message.test).is_(False),
    col(Message.transactional).is_(False),
    col(Message.status).in_(REACHED_PROVIDER),
)
"""The ledger rows that can be credited at all (see the module's rule)."""


def creditable() -> Any:
    return select(Message).where(*CREDITABLE)


def touch_of(message: Message) -> Touch:
    assert message.id is not None and message.conversion_window_seconds is not None
    return Touch(message.id, message.scheduled_at, timedelta(seconds=message.conversion_window_seconds))


def credit_purchase(session: Session, event: Event) -> Conversion | None:
    """Credit one purchase to the message that converted it, if any, in the session's
    transaction (the caller commits); idempotent."""
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
    session.flush()
    return conversion


def rebuild(session: Session) -> int:
    """Recompute every credit from the ledger and the events (idempotent); the number of
    conversions. Reads plain columns, not rows as objects: a million messages fit in memory."""
    sent: dict[str, list[tuple[Touch, tuple[Any, ...]]]] = defaultdict(list)
    columns = (
        col(Message.id),
        col(Message.customer_id),
        col(Message.journey_id),
        col(Message.stage),
        col(Message.step),
        col(Message.template),
        col(Message.scheduled_at),
        col(Message.conversion_window_seconds),
    )
    for row in session.execute(sa_select(*columns).where(*CREDITABLE)):
        message_id, customer_id, _, _, _, _, scheduled_at, window = row
        sent[customer_id].append((Touch(message_id, scheduled_at, timedelta(seconds=window)), tuple(row)))
    purchases = session.execute(
        sa_select(
            col(Event.event_id), col(Event.customer_id), col(Event.occurred_at), col(Event.amount)
        ).where(col(Event.type) == EventType.PURCHASE)
    )
    rows: list[dict[str, Any]] = []
    credited_at = utcnow()
    for event_id, customer_id, occurred_at, amount in purchases:
        candidates = sent.get(customer_id, [])
        touch = last_touch((touch for touch, _ in candidates), occurred_at)
        if touch is None:
            continue
        message = next(row for candidate, row in candidates if candidate is touch)
        rows.append(
            {
                "event_id": event_id,
                "message_id": touch.message_id,
                "customer_id": customer_id,
                "journey_id": message[2],
                "stage": message[3],
                "step": message[4],
                "template": message[5],
                "amount": amount or 0.0,
                "window_seconds": message[7],
                "sent_at": touch.sent_at,
                "purchased_at": occurred_at,
                "credited_at": credited_at,
            }
        )
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
        amount=event.amount or 0.0,
        window_seconds=message.conversion_window_seconds,
        sent_at=message.scheduled_at,
        purchased_at=event.occurred_at,
        credited_at=utcnow(),
    )


def _batches(rows: Sequence[dict[str, Any]], size: int) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
