"""The Segment tracking API under /segment/v1: a Segment library (analytics-python,
analytics.js) or RudderStack pointed at cyklo by its `host` setting, unchanged.

The libraries resend a batch answered 408, 429 or 5xx and drop it on any other 4xx. So a
batch holding a bad call is answered 200 with a result per call, the bad ones naming their
field, as Segment answers; a batch is refused whole only when it cannot be read. Calls that
met an outage make the answer 503 with Retry-After, and resending the whole batch is safe:
what was kept comes back a duplicate by its messageId, and a profile saved twice is the same.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic
from pydantic import BaseModel, SkipValidation

from api import errors
from api.auth import identify
from api.bounded_json import BoundedJsonRoute
from api.dependencies import EventGate, EventGateDep, RouterDep, SettingsDep
from api.errors import FieldError
from api.ingest import route_all, save_profile, stored_profile
from api.metrics import count_refused_before_routing
from api.models import MAX_BATCH
from definition.identifiers import event_id_problem
from ingestion.segment import (
    EventCall,
    Ignored,
    ProfileCall,
    Refused,
    SegmentBatch,
    SegmentMapping,
    SegmentMessage,
    Translation,
    envelope,
    load_mapping,
    translate,
    updated_profile,
)
from routing.events import EventRouter
from settings import Settings

PREFIX = "/segment/v1"
BASIC = HTTPBasic(
    auto_error=False,
    description="a write key from CYKLO_SEGMENT_WRITE_KEYS as the user name, the password empty",
)
SINGLE_CALLS = ("identify", "track", "page")
"""What other senders post one at a time; the libraries send everything as a batch."""


class SegmentResult(BaseModel):
    index: int
    """Position in the batch (0 for a single call)."""
    message_id: str | None
    status: Literal["accepted", "duplicate", "rejected", "failed", "ignored"]
    """accepted (event routed or profile saved), duplicate (messageId seen before), rejected
    (bad input: fix it), failed (not kept: send it again) or ignored (a call cyklo has no use for)"""
    errors: list[FieldError] = []
    """For rejected, failed and ignored: the Segment field and why."""


class SegmentAnswer(BaseModel):
    success: bool
    """Segment's own answer: true when the request was taken (results say what became of each call)."""
    accepted: int
    duplicates: int
    rejected: int
    failed: int
    ignored: int
    results: list[SegmentResult]


def write_keys(settings: Settings) -> dict[str, frozenset[str]]:
    return {
        key: frozenset({"segment"})
        for key in (part.strip() for part in settings.segment_write_keys.split(","))
        if key
    }


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": 'Basic realm="segment"'}
    )


def _basic_user(header: str) -> str | None:
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def _authorised(keys: Mapping[str, frozenset[str]]) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        if not keys:
            raise _unauthorised("no Segment write keys are configured here: set CYKLO_SEGMENT_WRITE_KEYS")
        header = request.headers.get("Authorization")
        if header is not None:
            presented = _basic_user(header)
        else:
            # Libraries before analytics-python 2.4 send the key in the body only.
            body = await request.json()
            presented = body.get("writeKey") if isinstance(body, dict) else None
        if not isinstance(presented, str):
            raise _unauthorised("a write key is required: Basic auth with the write key as the user name")
        if identify(keys, presented) is None:
            raise _unauthorised("unknown write key: use one of CYKLO_SEGMENT_WRITE_KEYS")

    return check


async def _batch_body(request: Request, declared: Annotated[SkipValidation[SegmentBatch], Body()]) -> Any:
    return await request.json()


async def _call_body(request: Request, declared: Annotated[SkipValidation[SegmentMessage], Body()]) -> Any:
    return await request.json()


def routes(settings: Settings) -> APIRouter:
    """The routes, with the mapping file read now: a bad one stops the API from starting."""
    mapping = load_mapping(settings.segment_mapping)
    router = APIRouter(
        prefix=PREFIX,
        tags=["segment"],
        route_class=BoundedJsonRoute,
        dependencies=[Security(BASIC), Depends(_authorised(write_keys(settings)))],
        responses=errors.responses(
            400,
            401,
            413,
            422,
            429,
            503,
            r503={
                "model": errors.Problem | SegmentAnswer,
                "description": "a call met an outage: send the batch again",
            },
        ),
    )

    @router.post("/batch", response_model=SegmentAnswer)
    async def batch(
        body: Annotated[Any, Depends(_batch_body)],
        settings: SettingsDep,
        events: RouterDep,
        gate: EventGateDep,
    ) -> Any:
        """`{batch: [call, …], sentAt}` as the Segment libraries send it (gzip or not); a result per call."""
        return await _ingest(body, None, mapping, settings, events, gate)

    for call_type in SINGLE_CALLS:
        router.add_api_route(
            f"/{call_type}",
            _single(call_type, mapping),
            methods=["POST"],
            response_model=SegmentAnswer,
            summary=f"One {call_type} call",
            description=f"One {call_type} call, as other senders post it; answered as a batch of one.",
        )
    return router


def _single(call_type: str, mapping: SegmentMapping) -> Callable[..., Awaitable[Any]]:
    async def single(
        body: Annotated[Any, Depends(_call_body)],
        settings: SettingsDep,
        events: RouterDep,
        gate: EventGateDep,
    ) -> Any:
        return await _ingest(body, call_type, mapping, settings, events, gate)

    single.__name__ = f"segment_{call_type}"
    return single


async def _ingest(
    body: Any,
    call_type: str | None,
    mapping: SegmentMapping,
    settings: Settings,
    events: EventRouter,
    gate: EventGate,
) -> Any:
    calls = envelope(body, batched=call_type is None)
    if isinstance(calls, Refused):
        return errors.refusal(status.HTTP_422_UNPROCESSABLE_CONTENT, _named(calls))
    if len(calls.messages) > MAX_BATCH:
        return errors.refusal(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"field": "batch", "message": f"{len(calls.messages)} calls: at most {MAX_BATCH} a batch"}],
        )
    if gate.full:
        return errors.refusal(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{gate.limit} event requests are in flight: retry after {errors.RETRY_AFTER_SECONDS} s",
        )
    received_at = datetime.now(UTC)
    translations = [
        translate(
            message,
            mapping,
            sent_at=calls.sent_at,
            received_at=received_at,
            shop_currency=settings.currency,
            implied_type=call_type,
        )
        for message in calls.messages
    ]
    with gate.held():
        results = await _results(calls.messages, translations, settings, events)
    answer = SegmentAnswer(
        success=True,
        accepted=sum(result.status == "accepted" for result in results),
        duplicates=sum(result.status == "duplicate" for result in results),
        rejected=sum(result.status == "rejected" for result in results),
        failed=sum(result.status == "failed" for result in results),
        ignored=sum(result.status == "ignored" for result in results),
        results=results,
    )
    if answer.failed:
        return JSONResponse(
            answer.model_copy(update={"success": False}).model_dump(),
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(errors.RETRY_AFTER_SECONDS)},
        )
    return answer


async def _results(
    messages: list[Any], translations: list[Translation], settings: Settings, events: EventRouter
) -> list[SegmentResult]:
    found: dict[int, SegmentResult] = {}
    # Profiles first, in the batch's order: a batch of identify then Order Completed must
    # find the profile, with its consent, saved when the thank-you is sent.
    for index, translation in enumerate(translations):
        shown = _shown_id(messages[index])
        if isinstance(translation, ProfileCall):
            profile = updated_profile(
                await asyncio.to_thread(stored_profile, settings, translation.customer_id), translation
            )
            if isinstance(profile, Refused):
                found[index] = SegmentResult(
                    index=index, message_id=shown, status="rejected", errors=_named(profile)
                )
            else:
                await asyncio.to_thread(save_profile, settings, profile)
                found[index] = SegmentResult(index=index, message_id=shown, status="accepted")
        elif isinstance(translation, Refused):
            found[index] = SegmentResult(
                index=index, message_id=shown, status="rejected", errors=_named(translation)
            )
        elif isinstance(translation, Ignored):
            found[index] = SegmentResult(
                index=index,
                message_id=shown,
                status="ignored",
                errors=[FieldError(field="type", message=translation.reason)],
            )
    calls = [
        (index, translation)
        for index, translation in enumerate(translations)
        if isinstance(translation, EventCall)
    ]
    count_refused_before_routing(
        result.errors[0].field if result.errors else "body" for result in found.values() if result.status == "rejected"
    )
    routed = await route_all(events, [call.item for _, call in calls], settings.event_budget_seconds)
    for (index, call), outcome in zip(calls, routed, strict=True):
        found[index] = SegmentResult(
            index=index,
            message_id=outcome.event_id,
            status=outcome.status,
            errors=[
                FieldError(field=_segment_field(problem.field, call.fields), message=problem.message)
                for problem in outcome.errors
            ],
        )
    return [found[index] for index in range(len(translations))]


def _named(refused: Refused) -> list[FieldError]:
    return [FieldError(field=field or "body", message=message) for field, message in refused.problems]


def _segment_field(field: str, fields: Mapping[str, str]) -> str:
    """A cyklo field as the sender wrote it: `properties.amount` → `properties.revenue`."""
    return fields.get(field) or next(
        (segment + field[len(ours) :] for ours, segment in fields.items() if field.startswith(f"{ours}.")),
        field,
    )


def _shown_id(message: Any) -> str | None:
    given = message.get("messageId") if isinstance(message, dict) else None
    return given if event_id_problem(given) is None else None
