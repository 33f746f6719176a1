"""`GET /v1/reports/lifecycle`: the lifecycle KPIs of a period (reports/lifecycle.py), with
customers per stage now from Temporal visibility."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api import errors
from api.dependencies import ClientDep, SettingsDep, requires
from api.errors import FieldError
from api.models import API_KEY, TimeQuery
from definition.model import Journey
from reports.lifecycle import (
    Granularity,
    LifecycleReport,
    PeriodProblem,
    StagesNow,
    lifecycle_report,
    period,
    published_versions,
)
from settings import Settings
from storage.database import session_for
from storage.models import utcnow
from visibility import stage_census

router = APIRouter(
    tags=["reports"],
    dependencies=[API_KEY, Depends(requires("reports"))],
    responses=errors.responses(401, 403, 422, 503),
)


@router.get("/v1/reports/lifecycle", response_model=LifecycleReport)
async def lifecycle(
    client: ClientDep,
    settings: SettingsDep,
    since: Annotated[TimeQuery, Query(description="start of the period (default: a year before until)")] = None,
    until: Annotated[TimeQuery, Query(description="end of the period, not included (default: now)")] = None,
    granularity: Granularity = Granularity.MONTH,
) -> LifecycleReport | JSONResponse:
    """Customers per stage now, stage flows per week or month, retention and churn, cohorts by
    sign-up month, CLV, order value and repeat purchases, NPS and CAC."""
    try:
        start, end = period(since, until, utcnow())
    except PeriodProblem as problem:
        return errors.refusal(422, [FieldError(field=problem.field, message=problem.message)])
    return await lifecycle_of(settings, client, start, end, granularity)


async def lifecycle_of(
    settings: Settings, client: Client, since: datetime, until: datetime, granularity: Granularity
) -> LifecycleReport:
    """The report, with customers per stage now asked of Temporal (the report page's too)."""
    journeys = await asyncio.to_thread(_published, settings)
    now = await stage_census(settings, journeys, client)
    return await asyncio.to_thread(_report, settings, since, until, granularity, now)


def _published(settings: Settings) -> dict[str, dict[int, Journey]]:
    with session_for(settings.database_url, read_only=True) as session:
        return published_versions(session)


def _report(
    settings: Settings, since: datetime, until: datetime, granularity: Granularity, now: list[StagesNow] | str
) -> LifecycleReport:
    with session_for(settings.database_url, read_only=True) as session:
        return lifecycle_report(
            session, since, until, stages_now=now, granularity=granularity, currency=settings.currency
        )
