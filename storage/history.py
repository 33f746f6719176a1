"""A customer's metrics as their recorded events make them: what a new enrolment starts from."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlmodel import Session, col, select

from definition.metrics import METRIC_EVENTS, Metrics
from storage.models import Event, utcnow

IN_FLIGHT = timedelta(minutes=5)
"""An event received this recently may still be on its way to the journey by signal."""
IN_FLIGHT_KEPT = 100


class History(NamedTuple):
    metrics: Metrics
    in_flight: list[str]
    """Ids of the counted events received in the last IN_FLIGHT (at most IN_FLIGHT_KEPT)."""


def metrics_of(session: Session, customer_id: str, at: datetime, handled: Collection[str]) -> History:
    """Every order and reaction of the customer in the events table, counted as of `at` as
    the journey would have counted them, except `handled` (events the journey counts itself)."""
    rows = session.exec(
        select(Event)
        .where(Event.customer_id == customer_id, col(Event.type).in_(sorted(METRIC_EVENTS)))
        .order_by(col(Event.occurred_at), col(Event.event_id))
    ).all()
    metrics = Metrics()
    recent: list[str] = []
    in_flight_since = utcnow() - IN_FLIGHT
    for event in rows:
        if event.event_id in handled:
            continue
        metrics.record(event.type, event.properties, event.occurred_at, at)
        if event.received_at >= in_flight_since:
            recent.append(event.event_id)
    return History(metrics, recent[-IN_FLIGHT_KEPT:])
