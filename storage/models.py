"""The tables: customers, the message ledger, events and published journey versions.

Personal data (email, phone, first name) lives only in `customers`; every other table
refers to a customer by id, so erasing a customer leaves the ledger without PII.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint, event
from sqlmodel import Field, SQLModel

from definition.events import EventType, number_in


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite too (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database: pass an aware one")
        return (
            value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value.astimezone(UTC)
        )

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, **kwargs)


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    id: str = Field(primary_key=True, max_length=128)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    first_name: str | None = Field(default=None, max_length=100)
    locale: str = Field(default="pl", max_length=8)
    timezone: str = Field(default="Europe/Warsaw", max_length=64)
    consent_email: bool = False
    consent_sms: bool = False
    consent_source: str | None = Field(default=None, max_length=200)
    consent_updated_at: datetime | None = _timestamp(default=None)
    consent_email_at: datetime | None = _timestamp(default=None)
    """The platform's time of the newest email consent statement applied: a change, or a
    withdrawal repeated (storage.consents.record_profile_consents); an older one loses to it."""
    consent_sms_at: datetime | None = _timestamp(default=None)
    """As consent_email_at, for SMS."""
    email_suppressed: bool = False
    """Hard bounce or spam report: no email of any kind until cleared."""
    sms_suppressed: bool = False
    """STOP received: no SMS of any kind until START."""
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _timestamp(default_factory=utcnow)
    updated_at: datetime = _timestamp(default_factory=utcnow)


class Message(SQLModel, table=True):
    """The message ledger: one row per step occurrence, written before the provider call."""

    __tablename__ = "messages"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=300)
    customer_id: str = Field(index=True, max_length=128)
    journey_id: str = Field(max_length=100)
    journey_version: int
    stage: str = Field(max_length=100)
    step: str = Field(max_length=300)
    channel: str = Field(max_length=8)
    template: str = Field(max_length=100)
    transactional: bool = False
    test: bool = False
    """A test send (`cyklo send-test`): kept for the record, never counted by the frequency
    cap or in reports."""
    status: str = Field(index=True, max_length=16)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    provider_message_id: str | None = Field(default=None, index=True, max_length=100)
    discount_code: str | None = Field(default=None, max_length=40)
    sms_encoding: str | None = Field(default=None, max_length=8)
    sms_segments: int | None = None
    attempts: int = 0
    scheduled_at: datetime = _timestamp(index=True)
    """Journey time of the send (simulated time in a simulation): what the cap counts by."""
    held_since: datetime | None = _timestamp(default=None)
    """When the message was due, if quiet hours held it until `scheduled_at`."""
    conversion_window_seconds: int | None = None
    """How long after the send a purchase converts it, as the published step (or its journey)
    said when it was sent; None: never credited (transactional, test, or no window). Kept on
    the row so attribution can be rebuilt from the ledger without the definitions."""
    created_at: datetime = _timestamp(default_factory=utcnow)
    updated_at: datetime = _timestamp(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Every accepted event, once: the dedup record and the analytics source."""

    __tablename__ = "events"

    event_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(index=True, max_length=128)
    type: str = Field(max_length=100)
    occurred_at: datetime = _timestamp()
    received_at: datetime = _timestamp(default_factory=utcnow)
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    amount: float | None = None
    """A purchase's `amount` out of its properties, so reports sum revenue in SQL instead of
    parsing every purchase's JSON (the same in SQLite and PostgreSQL). Set on insert from the
    properties (below); a bulk insert or COPY must set it itself."""


@event.listens_for(Event, "before_insert")
def _purchase_amount(mapper: Any, connection: Any, row: Event) -> None:
    if row.type == EventType.PURCHASE and row.amount is None:
        row.amount = number_in(row.properties, "amount")


class Conversion(SQLModel, table=True):
    """A purchase credited to the message that converted it (storage.conversions: last touch).
    One row per purchase at most; the message's journey, step and time are copied so the
    reports group and filter conversions without reading the ledger again."""

    __tablename__ = "conversions"
    __table_args__ = (Index("ix_conversions_journey_sent", "journey_id", "sent_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=200)
    """The purchase (events.event_id): unique, so a purchase converts one message."""
    message_id: int = Field(index=True)
    customer_id: str = Field(index=True, max_length=128)
    journey_id: str = Field(max_length=100)
    stage: str = Field(max_length=100)
    step: str = Field(max_length=300)
    template: str = Field(max_length=100)
    amount: float
    """The purchase's `amount`, in the shop currency (CYKLO_CURRENCY)."""
    window_seconds: int
    sent_at: datetime = _timestamp()
    """The message's scheduled_at: reports take a period by the send, as the funnel does."""
    purchased_at: datetime = _timestamp()
    credited_at: datetime = _timestamp(default_factory=utcnow)


class StageEntry(SQLModel, table=True):
    """A customer entering a stage of a journey, written by the journey itself (the local
    activity it runs at every stage entry): what stage flows, retention and churn count."""

    __tablename__ = "stage_entries"
    __table_args__ = (UniqueConstraint("journey_id", "customer_id", "instance", "entry"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str = Field(max_length=100)
    customer_id: str = Field(index=True, max_length=128)
    instance: str = Field(max_length=16)
    """The enrolment (JourneyState.instance): a customer who enters the journey again is another."""
    entry: int
    """The enrolment's stage entry number, 1 for the first: a retried activity writes it once."""
    stage: str = Field(max_length=100)
    previous_stage: str | None = Field(default=None, max_length=100)
    journey_version: int
    entered_at: datetime = _timestamp(index=True)
    """Journey time (simulated time in a simulation)."""


class ExperimentAssignment(SQLModel, table=True):
    """A customer's arm of a split, written by the journey when it first reaches the split
    (the record_assignment local activity): what the experiments report counts."""

    __tablename__ = "experiment_assignments"
    __table_args__ = (UniqueConstraint("journey_id", "split", "customer_id", "instance"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str = Field(max_length=100)
    split: str = Field(max_length=100)
    customer_id: str = Field(index=True, max_length=128)
    instance: str = Field(max_length=16)
    """The enrolment: a customer who enters the journey again is assigned again (the same
    arm, the hash being sticky, unless a winner was decided meanwhile)."""
    arm: str | None = Field(default=None, max_length=100)
    """None: the split's holdout."""
    by_winner: bool = False
    """The winner rule chose the arm, not the hash: left out of the comparison that decided it."""
    assigned_at: datetime = _timestamp()
    """Journey time (simulated time in a simulation): conversions are counted from it."""


class ExperimentWinner(SQLModel, table=True):
    """The moment a split's `winner:` rule held, with the figures it held on: from then on
    new entrants the hash sends to an arm get this one."""

    __tablename__ = "experiment_winners"
    __table_args__ = (UniqueConstraint("journey_id", "split"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str = Field(max_length=100)
    split: str = Field(max_length=100)
    arm: str = Field(max_length=100)
    decided_at: datetime = _timestamp()
    """Journey time of the assignment that found the rule holding."""
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """Customers and conversions per arm, the runner-up and the p-value the decision took."""


class ConsentRecord(SQLModel, table=True):
    """One change of a customer's consent or suppression, with where it came from: what a
    GDPR export shows, and what tells whether an SMS START may lift a suppression."""

    __tablename__ = "consent_history"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, max_length=128)
    channel: str = Field(max_length=8)
    change: str = Field(max_length=16)
    """storage.consents.Change: granted, withdrawn, suppressed, lifted, noted."""
    origin: str = Field(max_length=16)
    """storage.consents.Origin: profile, sendgrid, sms_reply."""
    source: str | None = Field(default=None, max_length=200)
    at: datetime = _timestamp()


class JourneyVersion(SQLModel, table=True):
    """A published journey: definition and templates frozen together under a version number."""

    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str = Field(index=True, max_length=100)
    version: int
    content_hash: str = Field(max_length=64)
    definition: str = Field(sa_column=Column(Text, nullable=False))
    """The definition as JSON, as the workflow receives it."""
    templates: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    published_at: datetime = _timestamp(default_factory=utcnow)
    git_commit: str | None = Field(default=None, max_length=40)
    """The commit of the git tree the files were published from, when they were in one."""
