"""Importing an existing customer base: profiles with their consents, and past orders.

Pure row logic shared by `cyklo import` and `POST /v1/import/...`: a file is read a line at
a time (CSV with a header, or JSON lines), each row becomes a validated profile or a
`purchase` event, and a bad row becomes a problem naming its line and field while the rest
goes on. Writing them is storage.imports'; starting journeys for the customers is
`start_imported`.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from definition.events import EventType
from definition.identifiers import EventId, Identifier
from routing.events import IncomingEvent
from storage.customers import Consents, CustomerProfile
from storage.models import Event

CHUNK_ROWS = 1000
"""Rows written in one transaction, and the most one API request may carry."""


class ImportKind(StrEnum):
    CUSTOMERS = "customers"
    ORDERS = "orders"


class UnknownFormat(ValueError):
    """The file's name says neither CSV nor JSON lines."""


@dataclass(frozen=True)
class RawRow:
    line: int
    """Where the row starts in its file (1 is the first line; a CSV's header is line 1)."""
    values: Mapping[str, Any]


@dataclass(frozen=True)
class BadRow:
    line: int
    field: str
    message: str

    def text(self, source: str) -> str:
        return f"{source}:{self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class ImportedCustomer:
    line: int
    profile: CustomerProfile
    signed_up: Event | None
    """The sign-up as history (the lifecycle report's cohorts count by it), under an id of
    the customer's own so a second import finds it recorded."""


@dataclass(frozen=True)
class ImportedOrder:
    line: int
    event: Event
    """A `purchase` whose event id is the order id, so importing it again finds it recorded."""


CSV_SUFFIXES = (".csv",)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def check_format(path: Path) -> None:
    if path.suffix.lower() not in CSV_SUFFIXES + JSON_LINES_SUFFIXES:
        raise UnknownFormat(
            f"{path}: name a .csv file (a header line, then a row per line) or .jsonl (a JSON object per line)"
        )


def read_rows(path: Path) -> Iterator[RawRow | BadRow]:
    """The file's rows, one at a time (never the whole file in memory)."""
    check_format(path)
    undecodable: set[int] = set()
    with path.open("rb") as data:
        lines = _text_lines(data, undecodable)
        for row in csv_rows(lines) if path.suffix.lower() in CSV_SUFFIXES else json_rows(lines):
            if isinstance(row, RawRow) and row.line in undecodable:
                yield BadRow(row.line, "row", "not UTF-8 text: save the file as UTF-8")
            else:
                yield row


def _text_lines(data: Iterable[bytes], undecodable: set[int]) -> Iterator[str]:
    """Each line decoded on its own, so one line in another encoding is that line's problem."""
    for number, raw in enumerate(data, start=1):
        try:
            yield (raw.removeprefix(codecs.BOM_UTF8) if number == 1 else raw).decode()
        except UnicodeDecodeError:
            undecodable.add(number)
            yield raw.decode(errors="replace")


def csv_rows(lines: Iterable[str]) -> Iterator[RawRow | BadRow]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    start = 1
    try:
        for values in reader:
            if header is None:
                header = [name.strip() for name in values]
            elif any(value.strip() for value in values):
                if len(values) != len(header):
                    yield BadRow(start, "row", f"{len(values)} columns where the header has {len(header)}")
                else:
                    # An empty cell is a value left out, as a missing key is in JSON.
                    yield RawRow(
                        start,
                        {name: value for name, value in zip(header, values, strict=True) if value != ""},
                    )
            start = reader.line_num + 1
    except csv.Error as error:
        yield BadRow(start, "row", f"not CSV: {error}")


def json_rows(lines: Iterable[str]) -> Iterator[RawRow | BadRow]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            values = json.loads(text)
        except ValueError as error:
            yield BadRow(number, "row", f"not JSON: {error}")
            continue
        if isinstance(values, dict):
            yield RawRow(number, values)
        else:
            yield BadRow(number, "row", 'a JSON object per line, like {"id": "c-1", ...}')


class _CustomerColumns(BaseModel):
    """A customer row: the profile's fields, its consents flat (CSV) or nested (JSON)."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    signed_up_at: AwareDatetime | None = None
    consent_email: bool | None = None
    consent_sms: bool | None = None
    consent_source: str | None = Field(default=None, max_length=200)
    consent_at: AwareDatetime | None = None
    consents: Consents | None = None


CUSTOMER_COLUMNS = tuple(_CustomerColumns.model_fields)


def parse_customer(row: RawRow) -> ImportedCustomer | list[BadRow]:
    try:
        columns = _CustomerColumns.model_validate(row.values)
        consents = columns.consents or Consents(
            email=bool(columns.consent_email),
            sms=bool(columns.consent_sms),
            source=columns.consent_source,
            at=columns.consent_at,
        )
        given = columns.model_dump(
            include={"id", "email", "phone", "first_name", "locale", "timezone"}, exclude_none=True
        )
        profile = CustomerProfile.model_validate({**given, "consents": consents})
    except ValidationError as error:
        return _bad(row.line, error)
    if columns.signed_up_at is None:
        return ImportedCustomer(row.line, profile, None)
    try:
        event = IncomingEvent(
            event_id=f"{EventType.SIGNED_UP}:{profile.id}",
            customer_id=profile.id,
            type=EventType.SIGNED_UP,
            occurred_at=columns.signed_up_at,
        )
    except ValidationError as error:
        return _bad(row.line, error, renamed={"occurred_at": "signed_up_at"})
    return ImportedCustomer(row.line, profile, event.row())


class _OrderColumns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: EventId
    customer_id: Identifier
    amount: Any = None
    currency: str | None = None
    occurred_at: AwareDatetime
    category: str | None = None


ORDER_COLUMNS = tuple(_OrderColumns.model_fields)
_ORDER_FIELD = {"event_id": "order_id", "properties": "amount"}
"""An event's field as the order row names it."""


def parse_order(row: RawRow, currency: str) -> ImportedOrder | list[BadRow]:
    """An order in the shop currency (`currency`): amounts are not converted."""
    try:
        columns = _OrderColumns.model_validate(row.values)
    except ValidationError as error:
        return _bad(row.line, error)
    if columns.currency is not None and columns.currency.upper() != currency.upper():
        return [BadRow(row.line, "currency", f"{columns.currency} is not the shop currency {currency}")]
    properties = {"order_id": columns.order_id, "amount": columns.amount}
    if columns.category is not None:
        properties["category"] = columns.category
    try:
        event = IncomingEvent(
            event_id=columns.order_id,
            customer_id=columns.customer_id,
            type=EventType.PURCHASE,
            occurred_at=columns.occurred_at,
            properties=properties,
        )
    except ValidationError as error:
        return _bad(row.line, error, renamed=_ORDER_FIELD)
    return ImportedOrder(row.line, event.row())



def _bad(line: int, error: ValidationError, renamed: Mapping[str, str] | None = None) -> list[BadRow]:
    found = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        if renamed and location and location[0] in renamed:
            # properties.amount is the row's amount; the event's id is the order's.
            location = (
                location[1:] if location[0] == "properties" and location[1:] else [renamed[location[0]]]
            )
        message = str(problem["msg"]).removeprefix("Value error, ")
        found.append(BadRow(line, ".".join(location) or "row", message))
    return found


def imported_event(customer_id: str) -> IncomingEvent:
    """The event that starts a customer's `imported: true` entries: one per customer ever (its
    id dedups in the events table), so a second import starts nothing again. Built, not
    validated: the API refuses this type from a shop."""
    return IncomingEvent.model_construct(
        event_id=f"{EventType.IMPORTED}:{customer_id}",
        customer_id=customer_id,
        type=EventType.IMPORTED,
        occurred_at=datetime.now().astimezone(),
        properties={},
    )
