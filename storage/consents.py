"""Consent history: every change of consent or suppression, per channel, with its origin.

The profile's consent flags say what the shop recorded; suppressions say what the
customer or a provider stopped. Each change is kept as a row, so an export can show when
and where consent was given or withdrawn, and a START can tell a suppression the
customer made by SMS from one it must not lift.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import inspect
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


def takes_effect(at: datetime, last: datetime | None, grants: bool) -> bool:
    """Whether a consent statement dated `at` (the platform's own time for it) may change a
    channel whose newest statement cyklo holds is dated `last`. Deliveries are retried and
    arrive out of order: an older statement leaves consent as it is, so a late "subscribed"
    never undoes a newer "unsubscribed"; at the same instant the withdrawal wins."""
    if last is None:
        return True
    return at > last or (at == last and not grants)


def last_change_at(session: Session, customer_id: str, channel: Channel) -> datetime | None:
    """When the channel's consent was last granted or withdrawn, whoever did it."""
    return session.exec(
        select(ConsentRecord.at)
        .where(
            ConsentRecord.customer_id == customer_id,
            ConsentRecord.channel == channel,
            col(ConsentRecord.change).in_([Change.GRANTED, Change.WITHDRAWN]),
        )
        .order_by(col(ConsentRecord.at).desc())
    ).first()


def record_profile_consents(
    session: Session,
    customer: Customer,
    email: bool | None,
    sms: bool | None,
    source: str | None,
    at: datetime | None,
    now: datetime,
) -> list[Channel]:
    """The shop's consent flags as of `at` (its own time for them; `now` if it gave none),
    applied to the profile; a row for each channel that changed, and a channel given as None
    left alone. Returns the channels left as they were because cyklo holds a newer statement
    for them (`takes_effect`)."""
    when = at or now
    held = {Channel.EMAIL: customer.consent_email, Channel.SMS: customer.consent_sms}
    stated = {Channel.EMAIL: customer.consent_email_at, Channel.SMS: customer.consent_sms_at}
    stale: list[Channel] = []
    applied = False
    for channel, after in ((Channel.EMAIL, email), (Channel.SMS, sms)):
        if after is None:
            continue
        if held[channel] == after:
            # A withdrawal repeated with its time is what a late, older grant must lose to
            # (an unsubscribed customer new to cyklo changes nothing). A repeated grant is
            # not kept: a profile saved with its consent unchanged must not outdate a withdrawal.
            if at is not None and not after and takes_effect(at, stated[channel], grants=False):
                stated[channel] = at
            continue
        # A customer not yet in the database has no history: no query per new imported row.
        recorded = last_change_at(session, customer.id, channel) if inspect(customer).has_identity else None
        newest = max((time for time in (stated[channel], recorded) if time is not None), default=None)
        if not takes_effect(when, newest, after):
            stale.append(channel)
            continue
        record(
            session,
            customer.id,
            channel,
            Change.GRANTED if after else Change.WITHDRAWN,
            Origin.PROFILE,
            source,
            when,
        )
        held[channel], stated[channel], applied = after, when, True
        customer.consent_updated_at = max(when, customer.consent_updated_at or when)
    if applied or not stale:  # where consent came from is kept with the consent it describes
        customer.consent_source = source
    customer.consent_email, customer.consent_sms = held[Channel.EMAIL], held[Channel.SMS]
    customer.consent_email_at, customer.consent_sms_at = stated[Channel.EMAIL], stated[Channel.SMS]
    return stale


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
