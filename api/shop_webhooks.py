"""Shop platform webhooks: Shopify and WooCommerce, each accepted only with its platform's
signature, then translated (ingestion.shopify, ingestion.woocommerce) and taken in through
api.ingest like any other event or profile.

The signature is checked on the raw bytes before anything is parsed; a wrong or missing one,
or no secret configured, is a 401 and nothing is recorded. Once signed, every answer but an
outage's is 200: the platform could only send the same bytes again, so a delivery cyklo
cannot use is answered with why (a guest order, a malformed field) and logged. An outage
(database, Temporal) is a 503 so the platform retries; a retry changes nothing twice, since
every event is keyed on what it is about (the order, the customer, the checkout state), and
a consent change counts only if it is newer than the one cyklo holds for its channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import func
from sqlmodel import select
from temporalio.client import Client

from api import errors, privacy
from api.bounded_json import BoundedJsonRoute
from api.dependencies import ClientDep, JourneysDep, RouterDep, SettingsDep
from api.errors import FieldError
from api.ingest import route_all, save_profile
from api.models import EventResult
from ingestion import shopify, woocommerce
from ingestion.shop import ConsentChange, ShopPayloadError, Translation
from ingestion.signatures import signed_by_any
from routing.events import EventRouter
from settings import Settings
from storage import customers
from storage.database import session_for
from storage.models import Event
from workflows.handle import Journeys

SHOPIFY_SIGNATURE = "X-Shopify-Hmac-Sha256"
SHOPIFY_TOPIC = "X-Shopify-Topic"
WOOCOMMERCE_SIGNATURE = "X-WC-Webhook-Signature"
WOOCOMMERCE_TOPIC = "X-WC-Webhook-Topic"
WOOCOMMERCE_PING = re.compile(rb"webhook_id=[0-9]{1,20}")
SHOP_BUDGET_SECONDS = 4.0
"""Shopify gives up on an answer after 5 seconds and counts it a failure."""

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=BoundedJsonRoute)

Translate = Callable[[str, Any], Translation]


class ShopWebhookReport(BaseModel):
    """What became of a signed delivery. The platform reads only the status; this is for people."""

    topic: str
    status: Literal["applied", "ignored", "skipped", "failed", "ping"]
    events: list[EventResult] = []
    profile_saved: bool = False
    erased: bool = False
    """The customer was erased at the shop's request (whatever cyklo kept of them)."""
    consents_changed: int = 0
    reason: str | None = None
    """Why nothing was applied: a guest or unpaid order, a topic cyklo does not read."""
    errors: list[FieldError] = []
    """A malformed delivery's problems (field names only): skipped, never retried."""
    warnings: list[str] = []


_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ShopWebhookReport,
        "description": "signed: applied, ignored (with why) or skipped (malformed)",
    },
    **errors.responses(
        401,
        503,
        r401={"description": "missing or wrong signature, or no secret configured"},
        r503={"model": ShopWebhookReport, "description": "an outage stopped it: the platform retries"},
    ),
}


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, f"webhook refused: {reason}")


@router.post("/shopify", responses=_ANSWERS)
async def shopify_webhook(
    request: Request, settings: SettingsDep, event_router: RouterDep, client: ClientDep, journeys: JourneysDep
) -> JSONResponse:
    """Shopify's `orders/create`, `orders/paid`, `customers/create|update`, `checkouts/create|update`,
    the two marketing-consent topics and the privacy ones (`customers/redact` erases), signed
    with the app's client secret."""
    raw = await request.body()
    secrets = [secret.strip() for secret in settings.shopify_webhook_secrets.split(",") if secret.strip()]
    if not secrets:
        raise _unauthorized("CYKLO_SHOPIFY_WEBHOOK_SECRETS is not set")
    if not signed_by_any(raw, request.headers.get(SHOPIFY_SIGNATURE), secrets):
        raise _unauthorized(f"missing or wrong {SHOPIFY_SIGNATURE}")
    topic = request.headers.get(SHOPIFY_TOPIC, "")
    return await _apply(settings, event_router, "shopify", topic, raw, shopify.translate, (client, journeys))


@router.post("/woocommerce", responses=_ANSWERS)
async def woocommerce_webhook(
    request: Request, settings: SettingsDep, event_router: RouterDep
) -> JSONResponse:
    """WooCommerce's `order.created|updated` and `customer.created|updated`, signed with the
    webhook's secret; and the unsigned ping WooCommerce sends when a webhook is saved."""
    raw = await request.body()
    secret = settings.woocommerce_webhook_secret
    if not secret:
        raise _unauthorized("CYKLO_WOOCOMMERCE_WEBHOOK_SECRET is not set")
    signature = request.headers.get(WOOCOMMERCE_SIGNATURE)
    if signature is None and WOOCOMMERCE_TOPIC not in request.headers and WOOCOMMERCE_PING.fullmatch(raw):
        # WooCommerce saves a webhook only if this unsigned ping gets a 200; it changes nothing.
        return JSONResponse(ShopWebhookReport(topic="ping", status="ping").model_dump())
    if not signed_by_any(raw, signature, [secret]):
        raise _unauthorized(f"missing or wrong {WOOCOMMERCE_SIGNATURE}")
    topic = request.headers.get(WOOCOMMERCE_TOPIC, "")
    return await _apply(settings, event_router, "woocommerce", topic, raw, woocommerce.translate, None)


async def _apply(
    settings: Settings,
    event_router: EventRouter,
    platform: str,
    topic: str,
    raw: bytes,
    translate: Translate,
    temporal: tuple[Client, Journeys] | None,
) -> JSONResponse:
    report = ShopWebhookReport(topic=topic, status="applied")
    try:
        translation = translate(topic, json.loads(raw))
    except (ValueError, RecursionError) as error:
        report.status = "skipped"
        if isinstance(error, ValidationError):
            report.errors = errors.field_errors(error.errors(include_input=False, include_url=False))
        elif isinstance(error, ShopPayloadError):
            report.errors = [FieldError(field=error.field, message=error.message)]
        else:
            report.errors = [FieldError(field="body", message="expected a JSON object")]
        fields = ", ".join(f"{problem.field}: {problem.message}" for problem in report.errors)
        logger.warning("%s webhook %s skipped: %s", platform, topic or "-", fields)
        return _answer(report)
    report.warnings = translation.warnings
    if translation.ignored is not None:
        report.status, report.reason = "ignored", translation.ignored
        return _answer(report)
    if translation.latest_state:
        try:
            newer = await asyncio.to_thread(_newer_state, settings, translation.events)
        except Exception as error:  # the database is out: the platform's retry does it
            logger.warning("%s webhook %s not applied, an outage: %s", platform, topic, type(error).__name__)
            report.status = "failed"
            return _answer(report)
        if newer is not None:
            report.status, report.reason = "ignored", newer
            return _answer(report)
    try:
        # The profile first: the welcome a signed_up starts reads it at send time.
        if translation.profile is not None:
            report.profile_saved = await asyncio.to_thread(_save, settings, translation)
        if translation.consents:
            stale = await asyncio.to_thread(_change_consents, settings, translation.consents)
            report.consents_changed = len(translation.consents) - len(stale)
            report.warnings = [
                *report.warnings,
                *(
                    f"{change.channel} consent dated {change.at.isoformat() if change.at else 'now'} left "
                    "as it was: cyklo holds a newer change, which a late or retried delivery does not undo"
                    for change in stale
                ),
            ]
        if translation.erase is not None and temporal is not None:
            erased = await privacy.erase_everywhere(settings, *temporal, translation.erase)
            report.erased = erased is not None
    except Exception as error:  # the database or Temporal is out: the platform's retry does it
        logger.warning("%s webhook %s not applied, an outage: %s", platform, topic, type(error).__name__)
        report.status = "failed"
        return _answer(report)
    if translation.events:
        budget = min(settings.event_budget_seconds, SHOP_BUDGET_SECONDS)
        report.events = await route_all(event_router, translation.events, budget)
        if any(result.status == "failed" for result in report.events):
            report.status = "failed"
    return _answer(report)


def _answer(report: ShopWebhookReport) -> JSONResponse:
    if report.status == "failed":
        return JSONResponse(
            report.model_dump(),
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(errors.RETRY_AFTER_SECONDS)},
        )
    return JSONResponse(report.model_dump())


def _save(settings: Settings, translation: Translation) -> bool:
    profile = translation.profile
    assert profile is not None
    with session_for(settings.database_url) as session:
        stored = customers.stored_profile(session, profile.id)
    if stored is not None and translation.profile_only_if_new:
        return False
    # A payload that says nothing about consent (Shopify sends it by its own topics since
    # 2025-01, WooCommerce never) keeps what is stored rather than withdraw it, and is no
    # statement of consent a late change would have to beat.
    save_profile(settings, profile, with_consents=translation.profile_states_consent)
    return True


def _newer_state(settings: Settings, items: list[dict[str, Any]]) -> str | None:
    """Why a state is not the newest (the customer's newer event of its type), or None."""
    with session_for(settings.database_url, read_only=True) as session:
        for item in items:
            given = item.get("occurred_at")
            if not isinstance(given, str):
                continue  # undated: it happened now, newer than anything held
            try:
                at = datetime.fromisoformat(given)
            except ValueError:
                continue  # api.ingest refuses it, by its field
            newest = session.exec(
                select(func.max(Event.occurred_at)).where(
                    Event.customer_id == item.get("customer_id"), Event.type == item.get("type")
                )
            ).one()
            if newest is not None and at.tzinfo is not None and newest > at:
                return (
                    f"this {item.get('type')} of {at.isoformat()} is older than the one of "
                    f"{newest.isoformat()} cyklo holds for the customer: the newer one stays"
                )
    return None


def _change_consents(settings: Settings, changes: list[ConsentChange]) -> list[ConsentChange]:
    """Applies each change by its own time; returns those older than what cyklo holds, left out."""
    stale = []
    for change in changes:
        with session_for(settings.database_url) as session:
            if not customers.change_consent(
                session, change.customer_id, change.channel, change.granted, change.source, change.at
            ):
                stale.append(change)
    return stale
