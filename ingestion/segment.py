"""The Segment tracking spec — what analytics-python, analytics.js and RudderStack send —
translated into cyklo's events and profiles.

Pure: the API reads the body, the clock and the stored profile, and routes what this gives
through api.ingest, where every event meets the same rules as one sent to /v1/events. What
is refused here is named by the Segment field the sender wrote (`userId`, `traits.email`,
`properties.revenue`), not by the cyklo field it would have become.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from definition.events import DELIVERY_EVENT_PREFIX, EVENT_TYPE_PATTERN, MAX_EVENT_TYPE_LENGTH, declared
from definition.identifiers import event_id_problem, id_problem
from definition.problems import Problem, ProblemsForPeople
from definition.yaml_problems import yaml_problem
from definition.yaml_source import compose_yaml, construct, line_of
from storage.customers import SUPPORTED_LOCALES, CustomerProfile

SHIPPED_MAPPING = Path(__file__).with_name("segment.yaml")
CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
ANONYMOUS_REFUSED = (
    "required: calls with only an anonymousId are not kept, since cyklo's journeys follow known "
    "customers (profile, consent); send identify with the shop's customer id as userId once "
    "the visitor is known, and userId on the calls after it"
)
NO_GROUPS = "cyklo keeps no accounts or groups: the call is not kept"
NO_ALIASES = "cyklo merges no ids: send identify and later calls with the shop's customer id as userId"

PROFILE_TRAITS: Mapping[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone": ("phone",),
    "first_name": ("firstName", "first_name"),
    "locale": ("locale",),
    "timezone": ("timezone", "timeZone"),
    "consents": ("consents",),
}
"""Profile fields and the identify traits they are read from (the spec's names first). Other
traits are dropped: the profile keeps only what the journeys use."""


class Count(BaseModel):
    """A property that is the number of items in a list of the Segment event (`products`)."""

    model_config = ConfigDict(extra="forbid")

    count: str = Field(min_length=1)


Source = list[str] | Count


class EventMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=MAX_EVENT_TYPE_LENGTH)
    properties: dict[str, Source] = {}
    """Per property of `type`, where it comes from; one left out comes from its own name."""

    @field_validator("properties", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: [source] if isinstance(source, str) else source for name, source in value.items()}
        return value

    @field_validator("properties")
    @classmethod
    def _declared_properties(cls, properties: dict[str, Source], info: ValidationInfo) -> dict[str, Source]:
        event_type = info.data.get("type")
        if event_type is None:
            return properties  # the type was refused: its own error says why
        spec = declared(event_type)
        for name in properties:
            if name not in spec:
                carried = ", ".join(spec) or "none"
                raise ValueError(f"{name!r} is not a property of {event_type} events (declared: {carried})")
        return properties

    def sources(self, name: str) -> Source:
        return self.properties.get(name, [name])


class SegmentMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: dict[str, EventMapping] = {}
    unmapped: Literal["record", "ignore"] = "record"
    page: str = Field("page_viewed", pattern=EVENT_TYPE_PATTERN, max_length=MAX_EVENT_TYPE_LENGTH)
    screen: str = Field("screen_viewed", pattern=EVENT_TYPE_PATTERN, max_length=MAX_EVENT_TYPE_LENGTH)


def load_mapping(path: Path | None = None) -> SegmentMapping:
    """The mapping file (the shipped one by default); its problems as `file:line: message`."""
    path = path or SHIPPED_MAPPING
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProblemsForPeople(
            str(Problem(path, 0, f"the Segment mapping cannot be read: {error}"))
        ) from None
    try:
        root = compose_yaml(text)
    except yaml.YAMLError as error:
        raise ProblemsForPeople(str(yaml_problem(path, text, error))) from None
    try:
        return SegmentMapping.model_validate(construct(root) or {})
    except ValidationError as error:
        problems = [
            Problem(
                path,
                line_of(root, tuple(item["loc"])),
                f"{'.'.join(str(part) for part in item['loc']) or 'the file'}: "
                f"{str(item['msg']).removeprefix('Value error, ')}",
            )
            for item in error.errors()
        ]
        raise ProblemsForPeople("\n".join(str(problem) for problem in problems)) from None


class SegmentMessage(BaseModel):
    """One call as the Segment libraries send it. Declared for /docs; the translation reads
    each field on its own, so one bad call is refused and the rest of its batch kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["identify", "track", "page", "screen", "group", "alias"] | None = None
    message_id: str | None = Field(None, alias="messageId", description="the dedup key: cyklo's event id")
    user_id: str | None = Field(None, alias="userId", description="the shop's customer id")
    anonymous_id: str | None = Field(None, alias="anonymousId", description="refused alone (README)")
    timestamp: datetime | None = None
    sent_at: datetime | None = Field(None, alias="sentAt")
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None


class SegmentBatch(BaseModel):
    """What `POST …/v1/batch` takes: analytics-python sends every call this way."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    batch: list[SegmentMessage]
    sent_at: datetime | None = Field(None, alias="sentAt")
    write_key: str | None = Field(None, alias="writeKey", description="taken when no Basic auth is sent")


FieldProblem = tuple[str, str]
"""(the Segment field, what is wrong with it)."""


@dataclass(frozen=True)
class Refused:
    problems: list[FieldProblem]


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class EventCall:
    """A call that becomes a cyklo event, as api.ingest.route_all takes it."""

    item: dict[str, Any]
    fields: Mapping[str, str] = field(default_factory=dict)
    """cyklo's field path → the Segment field it came from, to name a refusal."""


@dataclass(frozen=True)
class ProfileCall:
    """An identify: the profile fields it sets, still to be merged and validated."""

    customer_id: str
    changes: dict[str, Any]
    fields: Mapping[str, str] = field(default_factory=dict)
    at: datetime | None = None
    """When the call was made (its corrected timestamp): the time of a consent given without its own `at`."""


Translation = EventCall | ProfileCall | Refused | Ignored


@dataclass(frozen=True)
class Envelope:
    """What a request carried: its calls, and the time its sender says it sent them."""

    messages: list[Any]
    sent_at: datetime | None


def envelope(body: Any, *, batched: bool) -> Envelope | Refused:
    """A batch body (`{batch, sentAt}`), or a single call (which carries its own sentAt)."""
    if not batched:
        return Envelope([body], None)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        return Refused([("batch", 'a list of calls is required: {"batch": [...], "sentAt": ...}')])
    sent_at = _time(body.get("sentAt"))
    if isinstance(sent_at, Refused):
        return sent_at
    return Envelope(body["batch"], sent_at)


def translate(
    message: Any,
    mapping: SegmentMapping,
    *,
    sent_at: datetime | None,
    received_at: datetime,
    shop_currency: str,
    implied_type: str | None = None,
) -> Translation:
    """One call, as what it becomes in cyklo. `implied_type` is the endpoint's (/v1/track)."""
    if not isinstance(message, dict):
        return Refused([("", "a call is an object")])
    call_type = message.get("type") or implied_type
    if implied_type is not None and call_type != implied_type:
        return Refused([("type", f"this endpoint takes {implied_type} calls")])
    if call_type not in CALL_TYPES:
        return Refused([("type", f"one of {', '.join(CALL_TYPES)}")])
    if call_type == "group":
        return Ignored(NO_GROUPS)
    if call_type == "alias":
        return Ignored(NO_ALIASES)
    message_id = message.get("messageId")
    if message_id is None:
        return Refused([("messageId", "required: it is the key that makes a resent call count once")])
    problem = event_id_problem(message_id)
    if problem is not None:
        return Refused([("messageId", problem)])
    customer_id = _customer_id(message)
    if isinstance(customer_id, Refused):
        return customer_id
    when = occurred_at(message, sent_at, received_at)
    if isinstance(when, Refused):
        return when
    if call_type == "identify":
        return _identify(message, customer_id, when)
    if call_type == "track":
        rule = _track_rule(message, mapping)
        if not isinstance(rule, EventMapping):
            return rule
    else:
        rule = EventMapping(type=mapping.page if call_type == "page" else mapping.screen)
    return _event(message, rule, message_id, customer_id, when, shop_currency)


def occurred_at(
    message: Mapping[str, Any], sent_at: datetime | None, received_at: datetime
) -> datetime | Refused:
    """The call's time on the server's clock, as Segment corrects it: `timestamp` moved by
    `receivedAt - sentAt`, the amount the sender's clock is off. A call without a timestamp
    happened when it arrived."""
    timestamp = _time(message.get("timestamp"), "timestamp")
    if isinstance(timestamp, Refused):
        return timestamp
    own_sent_at = _time(message.get("sentAt"), "sentAt")
    if isinstance(own_sent_at, Refused):
        return own_sent_at
    if timestamp is None:
        return received_at
    sent = own_sent_at or sent_at
    if sent is None:
        return timestamp
    try:
        return timestamp + (received_at - sent)
    except OverflowError:
        return Refused([("timestamp", "a time this side of the year 9999 once the clock skew is corrected")])


def updated_profile(existing: CustomerProfile | None, call: ProfileCall) -> CustomerProfile | Refused:
    """The stored profile with the identify's traits over it, under PUT /v1/customers' rules
    (strict JSON, every field validated). Consents given are merged into the stored ones; a
    change without its own `at` is dated when the call was made, so a resent or late identify
    older than the consent cyklo holds changes nothing (storage.consents.takes_effect)."""
    merged: dict[str, Any] = existing.model_dump(mode="json") if existing else {"id": call.customer_id}
    for name, value in call.changes.items():
        if name == "consents" and isinstance(value, dict):
            stored = {key: item for key, item in merged.get("consents", {}).items() if key != "at"}
            dated = {"at": call.at.isoformat()} if call.at is not None else {}
            merged["consents"] = {**stored, **dated, **value}
        else:
            merged[name] = value
    try:
        return CustomerProfile.model_validate_json(json.dumps(merged), strict=True)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            first, *rest = [str(part) for part in item["loc"]] or [""]
            where = ".".join([call.fields.get(first, f"traits.{first}"), *rest])
            problems.append((where, str(item["msg"]).removeprefix("Value error, ")))
        return Refused(problems)


def event_type_of(name: str) -> str | None:
    """An unmapped event's name in snake case ("Product Viewed" → product_viewed), if it makes one."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    snake = re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")
    if len(snake) > MAX_EVENT_TYPE_LENGTH or not re.fullmatch(EVENT_TYPE_PATTERN, snake):
        return None
    return snake


def _customer_id(message: Mapping[str, Any]) -> str | Refused:
    user_id = message.get("userId")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)  # the libraries send numbers as text; other senders may not
    if user_id is None or user_id == "":
        if message.get("anonymousId") not in (None, ""):
            return Refused([("userId", ANONYMOUS_REFUSED)])
        return Refused([("userId", "required: the shop's customer id")])
    problem = id_problem(user_id)
    if problem is not None:
        return Refused([("userId", problem)])
    assert isinstance(user_id, str)
    return user_id


def _identify(message: Mapping[str, Any], customer_id: str, when: datetime) -> ProfileCall | Refused:
    traits = message.get("traits") or {}
    context = message.get("context") or {}
    if not isinstance(traits, dict):
        return Refused([("traits", "an object")])
    changes: dict[str, Any] = {}
    fields: dict[str, str] = {}
    for name, trait_names in PROFILE_TRAITS.items():
        given = next((trait for trait in trait_names if trait in traits), None)
        if given is not None:
            changes[name] = traits[given]
            fields[name] = f"traits.{given}"
    # The context is filled in by the sender's device: a locale or zone cyklo cannot use is
    # no fault of the shop's, so it is left out rather than refusing the call.
    if isinstance(context, dict):
        locale = context.get("locale")
        if "locale" not in changes and isinstance(locale, str):
            language = locale.replace("_", "-").split("-")[0].lower()
            if language in SUPPORTED_LOCALES:
                changes["locale"] = language
        zone = context.get("timezone")
        if "timezone" not in changes and isinstance(zone, str) and _known_zone(zone):
            changes["timezone"] = zone
    return ProfileCall(customer_id, changes, fields, when)


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _track_rule(message: Mapping[str, Any], mapping: SegmentMapping) -> EventMapping | Refused | Ignored:
    name = message.get("event")
    if not isinstance(name, str) or not name.strip():
        return Refused([("event", "required: the event's name")])
    rule = mapping.events.get(name)
    if rule is not None:
        return rule
    if mapping.unmapped == "ignore":
        return Ignored(f"{name!r} is not in the Segment mapping (unmapped: ignore)")
    event_type = event_type_of(name)
    if event_type is not None and event_type.startswith(DELIVERY_EVENT_PREFIX):
        # Segment's email sources report the sends of other tools: counted with cyklo's own
        # delivery events they would double the opens and clicks the journeys read.
        return Ignored(f"{name!r}: cyklo takes email events from its own providers' webhooks")
    if event_type is None:
        return Refused(
            [("event", "a name that makes no event type (letters and digits): map it in the Segment mapping")]
        )
    return EventMapping(type=event_type)


def _event(
    message: Mapping[str, Any],
    rule: EventMapping,
    message_id: str,
    customer_id: str,
    when: datetime,
    shop_currency: str,
) -> EventCall | Refused:
    given = message.get("properties") or {}
    if not isinstance(given, dict):
        return Refused([("properties", "an object")])
    currency = given.get("currency")
    if currency is not None and (not isinstance(currency, str) or currency.upper() != shop_currency.upper()):
        return Refused(
            [
                (
                    "properties.currency",
                    f"cyklo counts amounts in {shop_currency} (CYKLO_CURRENCY): convert before sending",
                )
            ]
        )
    properties: dict[str, Any] = {}
    fields = {"event_id": "messageId", "customer_id": "userId", "occurred_at": "timestamp", "type": "event"}
    for name, spec in declared(rule.type).items():
        sources = rule.sources(name)
        found = _picked(given, sources)
        if found is not None:
            properties[name], fields[f"properties.{name}"] = found[0], f"properties.{found[1]}"
        elif spec.required:
            named = [sources.count] if isinstance(sources, Count) else sources
            return Refused(
                [
                    (
                        f"properties.{named[0]}",
                        f"required: {rule.type} events need {name}, taken from {' or '.join(named)}",
                    )
                ]
            )
    item = {
        "event_id": message_id,
        "customer_id": customer_id,
        "type": rule.type,
        "occurred_at": when.isoformat(),
        "properties": properties,
    }
    return EventCall(item, fields)


def _picked(properties: Mapping[str, Any], sources: Source) -> tuple[Any, str] | None:
    """(value, Segment path) of the first source present."""
    if isinstance(sources, Count):
        items = _at(properties, sources.count)
        return (len(items), sources.count) if isinstance(items, list) else None
    for path in sources:
        value = _at(properties, path)
        if value is not None:
            return value, path
    return None


def _at(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _time(value: Any, name: str = "sentAt") -> datetime | Refused | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            # The spec's times are ISO-8601; one without an offset is taken as UTC, as Segment does.
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return Refused([(name, "an ISO-8601 time, e.g. 2026-03-02T10:00:00.000Z")])
