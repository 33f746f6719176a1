"""What the API's routes take and give, as declared models: /docs and /openapi.json show them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SkipValidation
from pydantic.json_schema import SkipJsonSchema

from api.errors import NO_CONTROL_CHARACTERS, FieldError
from definition.identifiers import ID_CHARACTERS, ID_PATTERN, ID_RULE, MAX_ID_LENGTH
from routing.events import IncomingEvent
from storage.customers import CustomerProfile
from workflows.interface import JourneyView

MAX_BATCH = 1000

BEARER = HTTPBearer(
    auto_error=False, description="an API key from CYKLO_API_KEYS with the scope the route names"
)
API_KEY = Security(BEARER)
"""Declares the key in OpenAPI; `api.auth.requires` checks it."""

CustomerIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description=f"the shop's customer id: {ID_CHARACTERS}",
    ),
    ID_RULE,
]
"""The one id rule of definition.identifiers: OpenAPI declares its characters and length; that an
id is never an email address the validator adds."""
JourneyIdPath = Annotated[str, Path(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)]
StageQuery = Annotated[str | None, Query(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)]
LimitQuery = Annotated[int, Query(ge=1, le=1000, description="at most this many")]
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")


def _rfc3339(value: Any) -> Any:
    # pydantic would also take `0.5` or `1700000000` as a time (Unix seconds): a report's
    # period is a time with its offset, as the schema's `date-time` says.
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ValueError("a date-time with its offset, e.g. 2026-03-01T00:00:00Z")
    return value


TimeQuery = Annotated[datetime | None, BeforeValidator(lambda value: None if value is None else _rfc3339(value))]
"""A moment in a query (a report's since/until): RFC 3339 only."""


ProfileIdPath = CustomerIdPath


class ProfileUpdate(CustomerProfile):
    """A profile as PUT sends it: the id is the URL's. A body may repeat it (older clients
    do), so it is taken but not declared: the schema cannot say "equal to the URL's"."""

    id: SkipJsonSchema[str | None] = None  # type: ignore[assignment]


ProfileBody = SkipValidation[ProfileUpdate]
"""Declared for OpenAPI; the route validates the raw JSON strictly, as declared (no coercion)."""


class CustomerSaved(BaseModel):
    id: str
    status: Literal["saved"]


Batch = Annotated[list[IncomingEvent], Field(min_length=1, max_length=MAX_BATCH)]
EventsBody = SkipValidation[IncomingEvent | Batch]
"""One event or a batch. Declared for OpenAPI, validated per item by the route (strictly, as
declared), so one bad event is rejected on its own and the rest of the batch is kept."""


class EventResult(BaseModel):
    index: int
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected", "failed"]
    """accepted, duplicate, rejected (bad input: fix it) or failed (not kept: send it again)"""
    errors: list[FieldError] = []
    warning: str | None = None
    """Accepted, but something the shop should know: e.g. the customer has no profile yet."""


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    failed: int = 0
    results: list[EventResult]


class FromRow(BaseModel):
    """A view of a table row, read from its attributes."""

    model_config = ConfigDict(from_attributes=True)


class CustomerContact(FromRow):
    """Who the customer is and how to reach them: the part of their row every view shows."""

    id: str
    email: str | None
    phone: str | None
    first_name: str | None
    locale: str
    timezone: str


class ProfileRecord(CustomerContact):
    """The customer's row: contact data, consents and suppressions as they stand now."""

    consent_email: bool
    consent_sms: bool
    consent_source: str | None
    consent_updated_at: datetime | None
    email_suppressed: bool
    sms_suppressed: bool
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class MessageEntry(FromRow):
    """One row of the message ledger (its idempotency key stays inside)."""

    id: int
    customer_id: str
    journey_id: str
    journey_version: int
    stage: str
    step: str
    channel: str
    template: str
    transactional: bool
    test: bool
    """Sent by `cyklo send-test` to a tester, not to the customer; never capped or reported."""
    status: str
    reason: str | None
    provider_message_id: str | None
    discount_code: str | None
    sms_encoding: str | None
    sms_segments: int | None
    attempts: int
    scheduled_at: datetime
    """Journey time of the send."""
    created_at: datetime
    updated_at: datetime


class EventEntry(FromRow):
    event_id: str
    customer_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any]


class CustomerRecord(BaseModel):
    """Profile, consents, every journey's state, message history and recent events."""

    profile: ProfileRecord | None
    """None while the shop has sent events but no profile yet (its messages are suppressed)."""
    messages: list[MessageEntry]
    """The newest 100, newest first."""
    events: list[EventEntry]
    """The newest 50, newest first."""
    journeys: dict[str, JourneyView]
    """By journey id: the journeys the customer is or was in."""


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    temporal: Literal["ok", "unreachable", "timeout"]
    database: Literal["ok", "unreachable", "timeout"]
