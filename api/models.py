"""What the API's routes take and give, as declared models: /docs and /openapi.json show them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field, SkipValidation
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


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    failed: int = 0
    results: list[EventResult]


class CustomerRecord(BaseModel):
    """Profile, consents, every journey's state, message history and recent events."""

    profile: dict[str, Any]
    messages: list[dict[str, Any]]
    events: list[dict[str, Any]]
    journeys: dict[str, JourneyView]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    temporal: Literal["ok", "unreachable", "timeout"]
    database: Literal["ok", "unreachable", "timeout"]
