"""Writing an import's rows: profiles saved only when they differ, orders recorded once.

Both take a chunk and commit it in one transaction, so an import of 100,000 rows is a
hundred transactions, and running it again writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from definition.events import EventType, number_in
from storage import customers
from storage.customers import CustomerProfile
from storage.database import insert_new
from storage.models import Customer, Event, utcnow


def save_customers(session: Session, profiles: Sequence[CustomerProfile]) -> int:
    """Save each profile that is new or differs; returns how many were."""
    ids = [profile.id for profile in profiles]
    known = {row.id: row for row in session.exec(select(Customer).where(col(Customer.id).in_(ids)))}
    now = utcnow()
    saved = 0
    for profile in profiles:
        customer = known.get(profile.id)
        if customer is not None and not customers.differs(customer, profile):
            continue
        if customer is None:
            customer = known[profile.id] = Customer(id=profile.id, created_at=now)
        customers.apply(session, customer, profile, now)
        session.add(customer)
        saved += 1
    session.commit()
    return saved


def record_events(session: Session, events: Sequence[Event]) -> int:
    """Record the events not recorded yet (by event id); returns how many were new. They are
    history: nothing is routed to journeys or credited to messages."""
    ids = {event.event_id for event in events}
    recorded = set(session.exec(select(Event.event_id).where(col(Event.event_id).in_(ids))))
    fresh: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.event_id not in recorded:
            row = event.model_dump()
            if event.type == EventType.PURCHASE and event.amount is None:
                # The reports' revenue column, which a bulk insert sets itself (storage.models).
                row["amount"] = number_in(event.properties, "amount")
            fresh.setdefault(event.event_id, row)
    if fresh:
        # Another import of the same orders at the same time: its rows win, none is doubled.
        insert_new(session, Event, list(fresh.values()))
    session.commit()
    return len(fresh)


def refresh_statistics(session: Session) -> None:
    """After a bulk load, let PostgreSQL's planner see the tables as they now are: with the
    statistics of a table that was nearly empty, the plans it keeps for the next import's
    lookups scan every row, which made a second import of 100,000 customers ten times slower."""
    if session.get_bind().dialect.name == "postgresql":
        for table in ("customers", "events", "consent_history"):
            session.execute(text(f"ANALYZE {table}"))
        session.commit()
