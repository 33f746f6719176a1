"""Consent history: every change of consent or suppression, per channel, with its origin.

The profile's consent flags say what the shop recorded; suppressions say what the
customer or a provider stopped. Each change is kept as a row, so an export can show when
and where consent was given or withdrawn, and a START can tell a suppression the
customer made by SMS from one it must not lift.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, col, select

from definition.channels import Channel
from storage.models import ConsentRecord, Customer, utcnow


class Change(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    SUPPRESSED = "suppressed"
    LIFTED = "lifted"
    """A suppression ended; consent is again what the profile says."""
    NOTED = "noted"
    """The customer said something about consent that changed nothing (a START with no STOP to lift)."""


class Origin(StrEnum):
    PROFILE = "profile"
    """The shop's profile (PUT /v1/customers): its own consent record."""
    SENDGRID = "sendgrid"
    """SendGrid's event webhook: unsubscribe, spam report, hard bounce."""
    SMS_REPLY = "sms_reply"
    """The customer's own SMS (STOP, START) through Twilio's inbound webhook."""


def record(
    session: Session,
    customer_id: str,
    channel: Channel,
    change: Change,
    origin: Origin,
    source: str | None,
    at: datetime | None = None,
) -> None:
    session.add(
        ConsentRecord(
            customer_id=customer_id,
            channel=channel,
            change=change,
            origin=origin,
            source=source[:200] if source else None,
            at=at or utcnow(),
        )
    )


def history(session: Session, customer_id: str) -> list[ConsentRecord]:
    return list(
        session.exec(
            select(ConsentRecord)
            .where(ConsentRecord.customer_id == customer_id)
            .order_by(col(ConsentRecord.at), col(ConsentRecord.id))
        ).all()
    )


def record_profile_consents(
    session: Session, customer: Customer, email: bool, sms: bool, source: str | None, at: datetime
) -> None:
    """The shop's consent flags, applied to the profile; a row for each channel that changed."""
    changes: list[tuple[Channel, bool, bool]] = [
        (Channel.EMAIL, customer.consent_email, email),
        (Channel.SMS, customer.consent_sms, sms),
    ]
    for channel, before, after in changes:
        if before != after:
            record(
                session,
                customer.id,
                channel,
                Change.GRANTED if after else Change.WITHDRAWN,
                Origin.PROFILE,
                source,
                at,
            )
    if (customer.consent_email, customer.consent_sms) != (email, sms):
        customer.consent_updated_at = at
    customer.consent_email, customer.consent_sms = email, sms
    customer.consent_source = source


def suppressed_by_sms_reply(session: Session, customer_id: str) -> bool:
    """Whether the customer's SMS suppression in force is one they made themselves by STOP."""
    latest = session.exec(
        select(ConsentRecord)
        .where(
            ConsentRecord.customer_id == customer_id,
            ConsentRecord.channel == "sms",
            col(ConsentRecord.change).in_([Change.SUPPRESSED, Change.LIFTED]),
        )
        .order_by(col(ConsentRecord.at).desc(), col(ConsentRecord.id).desc())
    ).first()
    return latest is not None and latest.change == Change.SUPPRESSED and latest.origin == Origin.SMS_REPLY


def erase(session: Session, customer_id: str) -> int:
    rows = history(session, customer_id)
    for row in rows:
        session.delete(row)
    return len(rows)
