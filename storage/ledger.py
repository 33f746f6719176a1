"""Delivery news from the providers, applied to the message ledger and to consent.

A message's status only moves forward (sent → delivered → opened → clicked), so webhook
events arriving out of order or twice leave the ledger right.
"""

from __future__ import annotations

from sqlmodel import Session, select

from storage import consents
from storage.consents import Change, Origin
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


def suppress_email(session: Session, customer_id: str, source: str = "hard bounce or spam report") -> None:
    customer = session.get(Customer, customer_id)
    if customer is not None and not customer.email_suppressed:
        customer.email_suppressed = True
        customer.updated_at = utcnow()
        session.add(customer)
        consents.record(session, customer_id, "email", Change.SUPPRESSED, Origin.SENDGRID, source)


def set_email_consent(session: Session, customer_id: str, consent: bool, source: str) -> None:
    customer = session.get(Customer, customer_id)
    if customer is not None:
        if customer.consent_email != consent:
            change = Change.GRANTED if consent else Change.WITHDRAWN
            consents.record(session, customer_id, "email", change, Origin.SENDGRID, source)
        customer.consent_email = consent
        customer.consent_source = source
        customer.consent_updated_at = customer.updated_at = utcnow()
        session.add(customer)


def customers_by_phone(session: Session, phone: str) -> list[Customer]:
    return list(session.exec(select(Customer).where(Customer.phone == phone)).all())


def apply_sms_reply(session: Session, phone: str, word: str, stop: bool) -> None:
    """A customer's STOP or START, for every profile with that number.

    STOP suppresses every SMS. START lifts only a suppression the customer made by STOP:
    it never grants marketing consent, which stays what the shop's profile recorded, and
    it leaves a suppression of any other origin in place. Either way the reply is recorded."""
    source = f"SMS {word}"
    for customer in customers_by_phone(session, phone):
        if stop and not customer.sms_suppressed:
            customer.sms_suppressed = True
            consents.record(session, customer.id, "sms", Change.SUPPRESSED, Origin.SMS_REPLY, source)
        elif stop:
            consents.record(
                session, customer.id, "sms", Change.NOTED, Origin.SMS_REPLY, f"{source}: already suppressed"
            )
        elif customer.sms_suppressed and consents.suppressed_by_sms_reply(session, customer.id):
            customer.sms_suppressed = False
            consents.record(session, customer.id, "sms", Change.LIFTED, Origin.SMS_REPLY, source)
        else:
            why = "suppressed by other means" if customer.sms_suppressed else "no STOP to lift"
            consents.record(
                session,
                customer.id,
                "sms",
                Change.NOTED,
                Origin.SMS_REPLY,
                f"{source}: {why}, consent unchanged",
            )
        customer.updated_at = utcnow()
        session.add(customer)
