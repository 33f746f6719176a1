"""Delivery news from the providers, applied to the message ledger and to consent.

A message's status only moves forward (sent → delivered → opened → clicked), so webhook
events arriving out of order or twice leave the ledger right. One record may move in any
direction once: a message the send recorded `failed` because the provider call went out and
no answer came ("outcome unknown") takes the provider's own word, from a delivery webhook or
from its message list, and keeps a note of where that word came from.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, literal, update
from sqlmodel import Session, col, select

from definition.channels import Channel
from definition.statuses import MessageStatus
from storage import consents
from storage.consents import Change, Origin
from storage.models import Customer, Message, UtcDateTime, utcnow

OUTCOME_UNKNOWN = "outcome unknown"
"""The reason's kind (its text before the first colon) when the send cannot know whether the
provider took the message; the send never resends it, so only evidence can settle it."""
REPAIRED = "repaired by"


def advances(current: MessageStatus, status: MessageStatus) -> bool:
    """Whether recording `status` over `current` moves the message forward (never back)."""
    if current == status:
        return False
    return status.rank is None or not (
        current.undelivered or (current.rank is not None and current.rank > status.rank)
    )


def advance_status(
    session: Session, message: Message, status: MessageStatus, reason: str | None = None
) -> bool:
    """Record `status` unless it would move the message backwards; True if it changed."""
    if not advances(MessageStatus(message.status), status):
        return False
    message.status = status
    if reason:
        message.reason = reason
    message.updated_at = utcnow()
    session.add(message)
    return True


def is_outcome_unknown(message: Message) -> bool:
    return message.status == MessageStatus.FAILED and (message.reason or "").startswith(OUTCOME_UNKNOWN)


def outcome_unknown_since(session: Session, cutoff: datetime) -> list[Message]:
    """Messages that became `failed (outcome unknown)` since `cutoff`, oldest first."""
    query = (
        select(Message)
        .where(
            Message.status == MessageStatus.FAILED,
            col(Message.reason).startswith(OUTCOME_UNKNOWN, autoescape=True),
            Message.created_at >= cutoff,
        )
        .order_by(col(Message.created_at))
    )
    return list(session.exec(query).all())


def apply_evidence(
    session: Session, message: Message, status: MessageStatus, source: str, detail: str | None = None
) -> bool:
    """What a provider says happened to `message`; True if the ledger changed. `source` says
    who said what ("webhook: sendgrid delivered"), `detail` the provider's words, if any.

    Forward only, as `advance_status`, except for a message whose outcome was unknown: there
    the provider's word replaces the guess, bad news included, and the reason records it."""
    if is_outcome_unknown(message):
        message.status = status
        message.reason = f"{REPAIRED} {source}{': ' + detail if detail else ''} ({OUTCOME_UNKNOWN} before)"
        message.updated_at = utcnow()
        session.add(message)
        return True
    if detail and (message.reason or "").startswith(REPAIRED):
        detail = f"{message.reason}; then {source}: {detail}"  # the repair's note stays readable
    return advance_status(session, message, status, detail)


def record_sent(session: Session, message_id: int, provider_id: str | None) -> tuple[MessageStatus, str | None, str]:
    """The provider took the message: `sent`, with its id, unless a delivery webhook already
    moved the row further. One statement, as it runs once for every message that goes out;
    (status, reason, customer id) as they are after it."""
    before_sent = [status for status in MessageStatus if advances(status, MessageStatus.SENT)]
    moves = col(Message.status).in_(before_sent)
    values: dict[str, object] = {
        "status": case((moves, MessageStatus.SENT.value), else_=col(Message.status)),
        "updated_at": case(
            (moves, literal(utcnow(), UtcDateTime())), else_=col(Message.updated_at)
        ),
    }
    if provider_id:
        values["provider_message_id"] = provider_id
    row = session.execute(
        update(Message)
        .where(col(Message.id) == message_id)
        .values(values)
        .returning(col(Message.status), col(Message.reason), col(Message.customer_id))
        .execution_options(synchronize_session=False)
    ).one()
    session.commit()
    return MessageStatus(row.status), row.reason, row.customer_id


def record_outcome_unknown(session: Session, message_id: int, reason: str) -> Message:
    """Mark a message whose provider call went unanswered `failed` (outcome unknown), unless
    delivery evidence reached its row while the call was waiting: that evidence stands."""
    message = session.get(Message, message_id)
    assert message is not None, "the send claimed this row before calling the provider"
    if MessageStatus(message.status).in_flight:
        message.status = MessageStatus.FAILED
        message.reason = reason
        message.updated_at = utcnow()
        session.add(message)
        session.commit()
    return message


def message_by_id(session: Session, message_id: str | int | None) -> Message | None:
    try:
        number = int(message_id) if message_id is not None else 0
    except (TypeError, ValueError):
        return None
    # Ids are positive 64-bit integers: anything else matches no row (and overflows a driver).
    return session.get(Message, number) if 0 < number < 2**63 else None


def message_by_provider_id(session: Session, provider_id: str) -> Message | None:
    return session.exec(select(Message).where(Message.provider_message_id == provider_id)).first()


def suppress_email(session: Session, customer_id: str, source: str = "hard bounce or spam report") -> None:
    customer = session.get(Customer, customer_id)
    if customer is not None and not customer.email_suppressed:
        customer.email_suppressed = True
        customer.updated_at = utcnow()
        session.add(customer)
        consents.record(session, customer_id, Channel.EMAIL, Change.SUPPRESSED, Origin.SENDGRID, source)


def set_email_consent(session: Session, customer_id: str, consent: bool, source: str) -> None:
    customer = session.get(Customer, customer_id)
    if customer is not None:
        if customer.consent_email != consent:
            change = Change.GRANTED if consent else Change.WITHDRAWN
            consents.record(session, customer_id, Channel.EMAIL, change, Origin.SENDGRID, source)
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
            consents.record(session, customer.id, Channel.SMS, Change.SUPPRESSED, Origin.SMS_REPLY, source)
        elif stop:
            consents.record(
                session, customer.id, Channel.SMS, Change.NOTED, Origin.SMS_REPLY, f"{source}: already suppressed"
            )
        elif customer.sms_suppressed and consents.suppressed_by_sms_reply(session, customer.id):
            customer.sms_suppressed = False
            consents.record(session, customer.id, Channel.SMS, Change.LIFTED, Origin.SMS_REPLY, source)
        else:
            why = "suppressed by other means" if customer.sms_suppressed else "no STOP to lift"
            consents.record(
                session,
                customer.id,
                Channel.SMS,
                Change.NOTED,
                Origin.SMS_REPLY,
                f"{source}: {why}, consent unchanged",
            )
        customer.updated_at = utcnow()
        session.add(customer)
