"""`GET /v1/reports/journeys/{journey}`: a journey's funnel, step by step, for a period."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BeforeValidator

from api import errors
from api.dependencies import SettingsDep, requires
from api.models import API_KEY, JourneyIdPath
from reports.funnel import JourneyFunnel, Period, journey_funnel
from settings import Settings
from storage import journey_versions
from storage.database import session_for

router = APIRouter(
    tags=["reports"],
    dependencies=[API_KEY, Depends(requires("reports"))],
    responses=errors.responses(401, 403, 404, 422, 503),
)

def _written_as_a_day(value: object) -> object:
    # pydantic would take `0.5` for a Unix time: a period is written as a day or an ISO time.
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("use a day (2026-03-01) or an ISO time (2026-03-01T12:00:00+01:00)")
    return value


PeriodQuery = Annotated[
    date | datetime | None,
    BeforeValidator(_written_as_a_day),
    Query(
        description="a day (2026-03-01, UTC; `until` includes it whole) or an ISO time (`until` excludes it)"
    ),
]


@router.get("/v1/reports/journeys/{journey_id}")
async def journey_report(
    journey_id: JourneyIdPath, settings: SettingsDep, since: PeriodQuery = None, until: PeriodQuery = None
) -> JourneyFunnel:
    """Per step of the journey, for messages sent in the period: sent, delivered, opened,
    clicked, bounced, converted (last touch within the step's conversion window), conversion
    rate, revenue, unsubscribed, and what was not sent and why; customers who entered."""
    funnel = await asyncio.to_thread(_funnel, settings, journey_id, Period.of(since, until))
    if funnel is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no journey {journey_id!r} is published")
    return funnel


def _funnel(settings: Settings, journey_id: str, period: Period) -> JourneyFunnel | None:
    with session_for(settings.database_url, read_only=True) as session:
        if journey_id not in journey_versions.published_ids(session):
            return None
        return journey_funnel(session, journey_id, period, settings.currency)
