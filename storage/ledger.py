"""Delivery news from the providers, applied to the message ledger and to consent.

A message's status only moves forward (sent → delivered → opened → clicked), so webhook
events arriving out of order or twice leave the ledger right.
"""

from __future__ import annotations

from sqlmodel import Session, select

from storage.models import Customer, Message, utcnow

PROGRESS = {"sending": 0, "sent": 1, "delivered": 2, "opened": 3, "clicked": 4}
FINAL_BAD = frozenset({"bounced", "failed"})


def advance_status(session: Session, message: Message, status: str, reason: str | None = None) -> bool:
    """Record `status` unless it would move the message backwards; True if it changed."""
    current = message.status
    if current == status:
        return False
    if status in PROGRESS and (current in FINAL_BAD or PROGRESS.get(current, -1) > PROGRESS[status]):
        return False
    message.status = status
    if reason:
        message.reason = reason
    message.updated_at = utcnow()
    session.add(message)
    return True


def message_by_id(session: Session, message_id: str | int | None) -> Message | None:
    try:
        return session.get(Message, int(message_id)) if message_id is not None else None
    except (TypeError, ValueError):
        return None


def message_by_provider_id(session: Session, provider_id: str) -> Message | None:
    return session.exec(select(Message).where(Message.provider_message_id == provider_id)).first()


def suppress_email(session: Session, customer_id: str) -> None:
    customer = session.get(Customer, customer_id)
    if customer is not None and not customer.email_suppressed:
        customer.email_suppressed = True
        customer.updated_at = utcnow()
        session.add(customer)


def set_email_consent(session: Session, customer_id: str, consent: bool, source: str) -> None:
    customer = session.get(Customer, customer_id)
    if customer is not None:
        customer.consent_email = consent
        customer.consent_source = source
        customer.consent_updated_at = customer.updated_at = utcnow()
        session.add(customer)


def customers_by_phone(session: Session, phone: str) -> list[Customer]:
    return list(session.exec(select(Customer).where(Customer.phone == phone)).all())
