"""Provider webhooks: accepted only with a valid signature, then applied to ledger and consent.

SendGrid signs its event webhook with ECDSA over `timestamp + raw body`; Twilio signs form
posts with HMAC-SHA1 over the public URL and the sorted parameters. Nothing is changed
before the signature is checked, and only the raw bytes are verified.

A signed batch is applied item by item, each parsed on its own: a malformed item is logged
(ids and field names only) and listed in the answer, the others are applied, and the answer
is 2xx, since the provider could only send the same bytes again. Only an outage (database,
Temporal) answers 503, so the provider retries; every item is safe to apply twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from activities.sms import TWILIO_OUTCOMES
from api.bounded_json import BoundedJsonRoute
from api.dependencies import RouterDep, SettingsDep
from definition.statuses import MessageStatus
from routing.events import EventRouter, IncomingEvent
from settings import Settings
from storage import ledger
from storage.database import session_for
from storage.models import Event

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
SENDGRID_STATUS = {
    "processed": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "open": MessageStatus.OPENED,
    "click": MessageStatus.CLICKED,
    "bounce": MessageStatus.BOUNCED,
    "dropped": MessageStatus.FAILED,
}
JOURNEY_EVENT = {"open": "email_opened", "click": "email_clicked", "bounce": "email_bounced"}
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

MAX_TIMESTAMP = 253402300799
"""9999-12-31T23:59:59Z: a later Unix time is no date Python can hold."""
PROVIDER_TEXT_LIMIT = 2000
SAFE_ID = re.compile(r"^[A-Za-z0-9_.:=-]{1,100}$")
"""What a provider's id looks like: only such ids are echoed in logs and answers."""

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=BoundedJsonRoute)


def _forbidden(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, f"webhook refused: {reason}")


class ItemProblem(BaseModel):
    field: str
    message: str


class SkippedItem(BaseModel):
    index: int
    """Position in the batch (0 for a Twilio callback, which carries one item)."""
    event_id: str | None
    """The provider's id of the item (sg_event_id, MessageSid) when it had a usable one."""
    errors: list[ItemProblem]


class WebhookReport(BaseModel):
    """What became of a signed batch. Providers read only the status; this is for people."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    """Items about mail cyklo did not send (no customer_id), or news that changes nothing."""
    failed: int = 0
    """Items that met an outage (database, Temporal): the answer is 503 and the provider retries."""
    skipped: list[SkippedItem] = []
    """Malformed items: recorded here and in the log (ids only), never applied, never retried."""


def _storable(value: str) -> str:
    # Both databases must be able to keep it: PostgreSQL refuses NUL, and a lone surrogate
    # (which JSON can carry) is no UTF-8 at all.
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate, not text") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]


class SendGridItem(BaseModel):
    """The fields of one SendGrid event cyklo reads, each typed and bounded; others are ignored.

    `customer_id`, `cyklo_message_id` and `journey_id` are the custom args the send attached."""

    model_config = ConfigDict(extra="ignore")

    event: Text = Field(min_length=1, max_length=40)
    sg_event_id: Text = Field(min_length=1, max_length=100)
    timestamp: int | None = Field(default=None, ge=0, le=MAX_TIMESTAMP)
    customer_id: Text = Field(min_length=1, max_length=128)
    cyklo_message_id: int | None = Field(default=None, ge=1, lt=2**63)
    journey_id: Text | None = Field(default=None, max_length=100)
    sg_message_id: Text | None = Field(default=None, max_length=200)
    type: Text | None = Field(default=None, max_length=40)
    reason: Text | None = Field(default=None, max_length=PROVIDER_TEXT_LIMIT)
    response: Text | None = Field(default=None, max_length=PROVIDER_TEXT_LIMIT)

    @field_validator("reason", "response", mode="before")
    @classmethod
    def _cut(cls, value: Any) -> Any:
        # A long bounce text is still news worth applying: keep its start, not the item.
        return value[:PROVIDER_TEXT_LIMIT] if isinstance(value, str) else value


class TwilioStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    MessageSid: str = Field(pattern=r"^[A-Z]{2}[0-9a-fA-F]{32}$")
    MessageStatus: str = Field(min_length=1, max_length=20, pattern=r"^[a-z_-]+$")
    ErrorCode: int | None = Field(default=None, ge=0, le=99999)

    @field_validator("ErrorCode", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


@router.post(
    "/sendgrid",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        200: {"model": WebhookReport, "description": "applied, but some items were malformed and skipped"},
        204: {"description": "every item applied (or a duplicate, or not about cyklo's mail)"},
        403: {"description": "missing, bad or expired signature"},
        503: {"model": WebhookReport, "description": "an outage stopped some items: send the batch again"},
    },
)
async def sendgrid_events(request: Request, settings: SettingsDep, event_router: RouterDep) -> Response:
    raw = await request.body()
    signature = request.headers.get(SENDGRID_SIGNATURE)
    timestamp = request.headers.get(SENDGRID_TIMESTAMP, "")
    if not settings.sendgrid_webhook_public_key or not signature or not timestamp.isdigit():
        raise _forbidden("missing signature")
    if abs(time.time() - int(timestamp)) > settings.webhook_max_age_seconds:
        raise _forbidden("signature too old (a replay?)")
    try:
        verifier = EventWebhook(settings.sendgrid_webhook_public_key)
        valid = verifier.verify_signature(raw.decode("utf-8"), signature, timestamp)
    except (ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise _forbidden("bad signature")
    # Signed from here on: whatever the body holds, SendGrid would only send it again, so
    # every answer but an outage's is 2xx and says what was skipped.
    report = WebhookReport()
    try:
        events = json.loads(raw)
    except (ValueError, RecursionError):
        events = None
    if not isinstance(events, list):
        problem = ItemProblem(field="body", message="expected a JSON list of events")
        _skip(report, "sendgrid", SkippedItem(index=0, event_id=None, errors=[problem]))
        return _answer(report)
    for index, item in enumerate(events):
        await _apply_sendgrid(settings, event_router, report, index, item)
    return _answer(report)


async def _apply_sendgrid(
    settings: Settings, event_router: EventRouter, report: WebhookReport, index: int, item: Any
) -> None:
    if isinstance(item, dict) and "customer_id" not in item:
        report.ignored += 1  # not one of cyklo's messages: nothing to correlate
        return
    try:
        parsed = SendGridItem.model_validate(item)
        journey_event = IncomingEvent(
            event_id=f"sendgrid:{parsed.sg_event_id}",
            customer_id=parsed.customer_id,
            type=JOURNEY_EVENT.get(
                parsed.event, f"email_{parsed.event}" if parsed.event.isidentifier() else "email_event"
            ),
            occurred_at=datetime.fromtimestamp(
                parsed.timestamp if parsed.timestamp is not None else time.time(), UTC
            ),
            properties={"message_id": parsed.cyklo_message_id, "journey_id": parsed.journey_id},
        )
    except ValidationError as error:
        given = item.get("sg_event_id") if isinstance(item, dict) else None
        event_id = given if isinstance(given, str) and SAFE_ID.fullmatch(given) else None
        _skip(report, "sendgrid", SkippedItem(index=index, event_id=event_id, errors=_problems(error)))
        return
    try:
        # The ledger first: applying it twice changes nothing, so an outage in routing (after
        # which SendGrid sends the batch again) cannot leave it behind.
        await asyncio.to_thread(_record_sendgrid, settings, parsed)
        # The events table deduplicates by sg_event_id: a replayed open counts once.
        outcome = await event_router.route(journey_event)
    except Exception as error:  # the database or Temporal is out: SendGrid's retry will apply it
        logger.warning(
            "sendgrid webhook: item %d (sg_event_id %s) not applied, an outage: %s",
            index,
            parsed.sg_event_id,
            type(error).__name__,
        )
        report.failed += 1
        return
    if outcome == "duplicate":
        report.duplicates += 1
    else:
        report.applied += 1


def _record_sendgrid(settings: Settings, item: SendGridItem) -> None:
    with session_for(settings.database_url) as session:
        message = ledger.message_by_id(session, item.cyklo_message_id)
        if message is not None and message.customer_id != item.customer_id:
            message = None  # custom args that contradict each other: trust neither
        if message is not None and item.event in SENDGRID_STATUS:
            if message.provider_message_id is None and item.sg_message_id:
                # The send's answer was lost, but SendGrid's id starts with the one it gave.
                message.provider_message_id = item.sg_message_id.split(".", 1)[0][:100]
            ledger.apply_evidence(
                session,
                message,
                SENDGRID_STATUS[item.event],
                f"webhook: sendgrid {item.event}",
                item.reason or item.response,
            )
        already_seen = session.get(Event, f"sendgrid:{item.sg_event_id}") is not None
        if (item.event == "bounce" and (item.type or "bounce") == "bounce") or item.event == "spamreport":
            ledger.suppress_email(session, item.customer_id)
        if item.event in ("unsubscribe", "group_unsubscribe", "spamreport") and not already_seen:
            ledger.set_email_consent(session, item.customer_id, False, f"sendgrid {item.event}")
        session.commit()


def _problems(error: ValidationError) -> list[ItemProblem]:
    # The location and the rule only: the value may be an email address.
    return [
        ItemProblem(
            field=".".join(str(part) for part in problem["loc"]) or "item",
            message=problem["msg"].removeprefix("Value error, "),
        )
        for problem in error.errors(include_input=False, include_url=False)
    ]


def _skip(report: WebhookReport, provider: str, item: SkippedItem) -> None:
    report.skipped.append(item)
    fields = ", ".join(f"{problem.field}: {problem.message}" for problem in item.errors)
    logger.warning(
        "%s webhook: item %d (id %s) skipped: %s", provider, item.index, item.event_id or "-", fields
    )


def _answer(report: WebhookReport) -> Response:
    if report.failed:
        return JSONResponse(
            report.model_dump(),
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "60"},
        )
    if report.skipped:
        return JSONResponse(report.model_dump(), status_code=status.HTTP_200_OK)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _twilio_params(request: Request, settings: SettingsDep) -> dict[str, str]:
    form = await request.form()
    params = {key: str(value) for key, value in form.items()}
    signature = request.headers.get("X-Twilio-Signature", "")
    # Twilio signs the URL it called: behind a proxy that is the public one, not ours.
    url = settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if not signature or not RequestValidator(settings.twilio_auth_token).validate(url, params, signature):
        raise _forbidden("bad or missing X-Twilio-Signature")
    return params


TwilioParams = Annotated[dict[str, str], Depends(_twilio_params)]
"""The form Twilio posted, its signature checked."""


@router.post(
    "/twilio/status",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        200: {"model": WebhookReport, "description": "signed, but malformed: recorded and skipped"},
        403: {"description": "missing or bad X-Twilio-Signature"},
        503: {"model": WebhookReport, "description": "the database is out: Twilio may send it again"},
    },
)
async def twilio_status(params: TwilioParams, settings: SettingsDep) -> Response:
    report = WebhookReport()
    try:
        callback = TwilioStatus.model_validate(params)
    except ValidationError as error:
        given = params.get("MessageSid")
        event_id = given if given and SAFE_ID.fullmatch(given) else None
        _skip(report, "twilio status", SkippedItem(index=0, event_id=event_id, errors=_problems(error)))
        return _answer(report)
    try:
        changed = await asyncio.to_thread(_record_twilio_status, settings, callback)
    except Exception as error:  # the database is out
        logger.warning(
            "twilio status webhook: %s not applied, an outage: %s", callback.MessageSid, type(error).__name__
        )
        report.failed += 1
        return _answer(report)
    report.applied, report.ignored = (1, 0) if changed else (0, 1)
    return _answer(report)


def _record_twilio_status(settings: Settings, callback: TwilioStatus) -> bool:
    outcome = TWILIO_OUTCOMES.get(callback.MessageStatus)
    if outcome is None:
        return False
    with session_for(settings.database_url) as session:
        # Only the sid identifies the message: one whose send lost Twilio's answer has none
        # recorded, and `cyklo reconcile` finds it in Twilio's message list instead.
        message = ledger.message_by_provider_id(session, callback.MessageSid)
        if message is None:
            return False
        code = f"twilio {callback.ErrorCode}" if callback.ErrorCode is not None else None
        changed = ledger.apply_evidence(
            session, message, outcome, f"webhook: twilio {callback.MessageStatus}", code
        )
        session.commit()
        return changed


@router.post("/twilio/inbound")
async def twilio_inbound(params: TwilioParams, settings: SettingsDep) -> Response:
    await asyncio.to_thread(_record_inbound, settings, params)
    return Response(EMPTY_TWIML, media_type="text/xml")


def _record_inbound(settings: Settings, params: dict[str, str]) -> None:
    word = (params.get("OptOutType") or params.get("Body", "")).strip().upper()
    if word not in STOP_WORDS and word not in START_WORDS:
        return  # HELP and ordinary replies change no consent
    with session_for(settings.database_url) as session:
        ledger.apply_sms_reply(session, params.get("From", ""), word, stop=word in STOP_WORDS)
        session.commit()
