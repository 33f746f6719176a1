"""GDPR erasure in the database: what is deleted, and what stays because it holds no person.

Deleted: the profile (contact data, consents, attributes), the customer's events with
their properties, the conversions made of their purchases (so a `cyklo report --rebuild`
finds what the report showed), the consent history. Kept: the message ledger, whose rows are ids,
templates and statuses (what was sent when, for the shop's accounts and the frequency
cap of nobody), with provider error texts, which can quote an address, blanked; and the
stage entries and experiment assignments, ids, stage and arm names that the shop's stage
flows and experiment counts are made of.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from storage import consents
from storage.models import Conversion, Customer, Event, Message, utcnow


@dataclass(frozen=True)
class ErasedRows:
    profile_deleted: bool
    events_deleted: int
    consent_records_deleted: int
    messages_kept: int


def erase_customer(session: Session, customer_id: str) -> ErasedRows:
    customer = session.get(Customer, customer_id)
    messages = session.exec(select(Message).where(Message.customer_id == customer_id)).all()
    for message in messages:
        if message.reason:
            message.reason = "erased"
        message.updated_at = utcnow()
        session.add(message)
    events = session.exec(
        select(func.count()).select_from(Event).where(col(Event.customer_id) == customer_id)
    ).one()
    session.execute(delete(Event).where(col(Event.customer_id) == customer_id))
    session.execute(delete(Conversion).where(col(Conversion.customer_id) == customer_id))
    consent_records = consents.erase(session, customer_id)
    if customer is not None:
        session.delete(customer)
    session.commit()
    return ErasedRows(customer is not None, int(events), consent_records, len(messages))
