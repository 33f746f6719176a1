"""The event vocabulary: event types that mean something to the engine, and the properties
each may carry, with their types and limits.

Properties reach workflow history, conditions and templates, so the rule is positive: an
event carries only the properties declared for its type here — what the metrics, the
default journeys' conditions and their templates read — and the API refuses any other,
naming it. The workflow runs the same check on what it receives and skips an event whose
declared values are wrong (an old event, a rule that slipped) instead of failing its task.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, assert_never

from definition.identifiers import id_problem

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*$"
"""An event type as events carry it and journeys name it: snake case."""
MAX_EVENT_TYPE_LENGTH = 100


class EventType(StrEnum):
    SIGNED_UP = "signed_up"
    PURCHASE = "purchase"
    CART_ABANDONED = "cart_abandoned"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    REVIEW_SUBMITTED = "review_submitted"
    IMPORTED = "imported"
    """Sent by `cyklo import start` only (the API refuses it from a shop): it starts a journey's
    `imported: true` entries for a customer whose history was imported."""


class Meaning(StrEnum):
    """What an event does to the engine beyond the transitions a journey declares for it."""

    ORDER = "order"
    """An order: counts, spend, points, categories (definition.metrics)."""
    REACTION = "reaction"
    """The customer's reaction to an email, counted per type."""


MEANINGS: Mapping[str, Meaning] = {
    EventType.PURCHASE: Meaning.ORDER,
    EventType.EMAIL_OPENED: Meaning.REACTION,
    EventType.EMAIL_CLICKED: Meaning.REACTION,
}
"""The events the metrics are made of: every journey receives them, whatever it waits for."""


def meaning(event_type: str) -> Meaning | None:
    return MEANINGS.get(event_type)


EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT = datetime(2200, 1, 1, tzinfo=UTC)
"""Beyond these a time is a bug in the sender (or the asker of a report), and near
datetime's own limits a time zone shift would overflow."""

DELIVERY_EVENT_PREFIX = "email_"
"""Delivery webhooks become `email_delivered`, `email_opened`, `email_bounced`, ... events."""


class ValueKind(StrEnum):
    ID = "id"
    """An order or cart number: the id rule (definition.identifiers); a whole number is taken as text."""
    TEXT = "text"
    """Short text such as a category: no control characters; the API also refuses email
    addresses and phone numbers in it."""
    NUMBER = "number"
    """A finite number from 0 to the maximum; numeric text ("250.00") is taken."""
    COUNT = "count"
    """A whole number from 0 to the maximum."""


@dataclass(frozen=True)
class PropertySpec:
    kind: ValueKind
    required: bool = False
    max_length: int = 100
    """For text."""
    maximum: float = 1_000_000_000
    """For numbers and counts: beyond any real order, well inside a float's exact range."""


DECLARED: Mapping[str, Mapping[str, PropertySpec]] = {
    EventType.SIGNED_UP: {
        # What the shop paid to win this customer (ads, vouchers), in the shop currency: the
        # lifecycle report's CAC is its total over the customers acquired in a period.
        "acquisition_cost": PropertySpec(ValueKind.NUMBER),
    },
    EventType.PURCHASE: {
        "order_id": PropertySpec(ValueKind.ID),
        # Order value drives points and the VIP threshold: a purchase must state it.
        "amount": PropertySpec(ValueKind.NUMBER, required=True),
        "category": PropertySpec(ValueKind.TEXT),
    },
    EventType.CART_ABANDONED: {
        "cart_id": PropertySpec(ValueKind.ID),
        "value": PropertySpec(ValueKind.NUMBER),
        "items_count": PropertySpec(ValueKind.COUNT, maximum=10_000),
    },
    # The answer to "how likely are you to recommend us?" (review_request): NPS counts it.
    EventType.REVIEW_SUBMITTED: {
        "score": PropertySpec(ValueKind.COUNT, required=True, maximum=10),
    },
}
DELIVERY_PROPERTIES: Mapping[str, PropertySpec] = {
    "message_id": PropertySpec(ValueKind.ID),
    "journey_id": PropertySpec(ValueKind.ID),
}
MAX_NAMED_PROBLEMS = 10
"""A body with thousands of unknown keys gets this many named, then a count."""

_SHOWN_NAME = re.compile(r"[!-~]{1,64}")
_NUMERIC_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_WHOLE_TEXT = re.compile(r"[0-9]+")


def declared(event_type: str) -> Mapping[str, PropertySpec]:
    """The properties an event of this type may carry (none for a type the engine gives no meaning)."""
    if event_type in DECLARED:
        return DECLARED[event_type]
    if event_type.startswith(DELIVERY_EVENT_PREFIX):
        return DELIVERY_PROPERTIES
    return {}


@dataclass(frozen=True)
class PropertyProblem:
    name: str
    """The property's name; empty when the name itself cannot be shown (not plain ASCII)."""
    message: str
    undeclared: bool = False


def checked_properties(
    event_type: str, properties: Mapping[str, Any]
) -> tuple[dict[str, Any], list[PropertyProblem]]:
    """The properties with normalised values (numeric text to numbers, numeric ids to text),
    and what is wrong with them.

    Never raises, whatever JSON it is given, and never quotes a value: messages end up in
    API answers and, in the workflow, in history.
    """
    spec = declared(event_type)
    normalised: dict[str, Any] = {}
    problems: list[PropertyProblem] = []
    undeclared = [name for name in properties if name not in spec]
    for name in undeclared[:MAX_NAMED_PROBLEMS]:
        problems.append(_undeclared(event_type, name, spec))
    if len(undeclared) > MAX_NAMED_PROBLEMS:
        problems.append(
            PropertyProblem(
                "", f"and {len(undeclared) - MAX_NAMED_PROBLEMS} more undeclared", undeclared=True
            )
        )
    for name, property_spec in spec.items():
        value = properties.get(name)
        if value is None:
            if property_spec.required:
                problems.append(PropertyProblem(name, f"required for {event_type} events"))
            elif name in properties:
                normalised[name] = None
            continue
        normal, problem = _checked_value(property_spec, value)
        if problem is None:
            normalised[name] = normal
        else:
            problems.append(PropertyProblem(name, problem))
    return normalised, problems


def invalid_declared(event_type: str, properties: Mapping[str, Any]) -> list[str]:
    """Names of the declared properties whose values are wrong (what the workflow may not use)."""
    _, problems = checked_properties(event_type, properties)
    return [problem.name for problem in problems if not problem.undeclared]


def _undeclared(event_type: str, name: str, spec: Mapping[str, PropertySpec]) -> PropertyProblem:
    carried = f"declared: {', '.join(spec)}" if spec else "they carry none"
    message = (
        f"not a property of {event_type} events ({carried}); events carry only declared "
        "properties, and personal data belongs in the customer profile"
    )
    if not _SHOWN_NAME.fullmatch(name):
        message = f"a property name that is not 1 to 64 visible ASCII characters: {message}"
        name = ""
    return PropertyProblem(name, message, undeclared=True)


def _checked_value(spec: PropertySpec, value: Any) -> tuple[Any, str | None]:
    match spec.kind:
        case ValueKind.ID:
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
                return str(value), None
            problem = id_problem(value)
            return value, (None if problem is None else f"expected an id: {problem}")
        case ValueKind.TEXT:
            if not isinstance(value, str):
                return value, "expected text"
            if len(value) > spec.max_length:
                return value, f"text of at most {spec.max_length} characters"
            if any(unicodedata.category(character) in ("Cc", "Cs") for character in value):
                return value, "control characters and lone surrogates are not allowed in text"
            return value, None
        case ValueKind.NUMBER:
            number = _number(value)
            if number is None:
                return value, f"expected a finite number from 0 to {spec.maximum:,.0f}"
            if not 0 <= number <= spec.maximum:
                return value, f"expected a number from 0 to {spec.maximum:,.0f}"
            return number, None
        case ValueKind.COUNT:
            count = _count(value)
            if count is None or not 0 <= count <= spec.maximum:
                return value, f"expected a whole number from 0 to {spec.maximum:,.0f}"
            return count, None
        case _:
            assert_never(spec.kind)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 40 or not _NUMERIC_TEXT.fullmatch(value):
            return None
    elif not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= 18 and _WHOLE_TEXT.fullmatch(value):
        return int(value)
    return None


def number_in(properties: Mapping[str, Any], name: str) -> float | None:
    """A numeric property as a float; None when it is missing or not a number (a bool is not).
    The one reader of amounts, scores and costs, for the ledger's columns and the reports."""
    value = properties.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
