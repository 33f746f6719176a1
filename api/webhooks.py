"""Provider webhooks: accepted only with a valid signature, then applied to ledger and consent.

SendGrid signs its event webhook with ECDSA over `timestamp + raw body`; Twilio signs form
posts with HMAC-SHA1 over the public URL and the sorted parameters. Nothing is changed
before the signature is checked, and only the raw bytes are verified.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from routing.events import EventRouter, IncomingEvent
from settings import Settings
from storage import ledger
from storage.database import session_for

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
SENDGRID_STATUS = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "dropped": "failed",
}
JOURNEY_EVENT = {"open": "email_opened", "click": "email_clicked", "bounce": "email_bounced"}
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _forbidden(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, f"webhook refused: {reason}")


@router.post("/sendgrid", status_code=status.HTTP_204_NO_CONTENT)
async def sendgrid_events(request: Request) -> Response:
    settings = _settings(request)
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
    try:
        events = json.loads(raw)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not JSON") from None
    if not isinstance(events, list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "expected a list of events")
    event_router: EventRouter = request.app.state.router
    for item in events:
        if isinstance(item, dict):
            await _apply_sendgrid(settings, event_router, item)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _apply_sendgrid(settings: Settings, event_router: EventRouter, item: dict[str, Any]) -> None:
    kind = str(item.get("event", ""))
    customer_id = item.get("customer_id")
    sg_event_id = item.get("sg_event_id")
    if not customer_id or not sg_event_id:
        return  # not one of cyklo's messages, or not deduplicable: nothing to correlate
    occurred_at = datetime.fromtimestamp(int(item.get("timestamp") or time.time()), UTC)
    journey_event = IncomingEvent(
        event_id=f"sendgrid:{sg_event_id}",
        customer_id=str(customer_id),
        type=JOURNEY_EVENT.get(kind, f"email_{kind}" if kind.isidentifier() else "email_event"),
        occurred_at=occurred_at,
        properties={"message_id": item.get("cyklo_message_id"), "journey_id": item.get("journey_id")},
    )
    # The events table deduplicates by sg_event_id: a replayed delivery changes nothing.
    if await event_router.route(journey_event) == "duplicate":
        return
    await asyncio.to_thread(_record_sendgrid, settings, kind, item)


def _record_sendgrid(settings: Settings, kind: str, item: dict[str, Any]) -> None:
    with session_for(settings.database_url) as session:
        message = ledger.message_by_id(session, item.get("cyklo_message_id"))
        if message is not None and kind in SENDGRID_STATUS:
            reason = item.get("reason") or item.get("response")
            ledger.advance_status(session, message, SENDGRID_STATUS[kind], str(reason) if reason else None)
        customer_id = str(item["customer_id"])
        if (kind == "bounce" and item.get("type", "bounce") == "bounce") or kind == "spamreport":
            ledger.suppress_email(session, customer_id)
        if kind in ("unsubscribe", "group_unsubscribe", "spamreport"):
            ledger.set_email_consent(session, customer_id, False, f"sendgrid {kind}")
        session.commit()


async def _twilio_params(request: Request) -> dict[str, str]:
    settings = _settings(request)
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


@router.post("/twilio/status", status_code=status.HTTP_204_NO_CONTENT)
async def twilio_status(request: Request) -> Response:
    params = await _twilio_params(request)
    await asyncio.to_thread(_record_twilio_status, _settings(request), params)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _record_twilio_status(settings: Settings, params: dict[str, str]) -> None:
    outcome = {"delivered": "delivered", "undelivered": "failed", "failed": "failed"}.get(
        params.get("MessageStatus", "")
    )
    if outcome is None:
        return
    with session_for(settings.database_url) as session:
        message = ledger.message_by_provider_id(session, params.get("MessageSid", ""))
        if message is None:
            return
        code = params.get("ErrorCode")
        ledger.advance_status(session, message, outcome, f"twilio {code}" if code else None)
        session.commit()


@router.post("/twilio/inbound")
async def twilio_inbound(request: Request) -> Response:
    params = await _twilio_params(request)
    await asyncio.to_thread(_record_inbound, _settings(request), params)
    return Response(EMPTY_TWIML, media_type="text/xml")


def _record_inbound(settings: Settings, params: dict[str, str]) -> None:
    word = (params.get("OptOutType") or params.get("Body", "")).strip().upper()
    if word not in STOP_WORDS and word not in START_WORDS:
        return  # HELP and ordinary replies change no consent
    with session_for(settings.database_url) as session:
        ledger.apply_sms_reply(session, params.get("From", ""), word, stop=word in STOP_WORDS)
        session.commit()
