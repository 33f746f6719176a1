"""GET /v1/reports/experiments: every split's arms compared, and the programme against the
global control group (reports/experiments.py computes it; this only serves it)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from api import errors
from api.dependencies import SettingsDep, requires
from api.models import API_KEY
from api.reports_journeys import PeriodQuery
from reports.experiments import ExperimentsReport, experiments_report
from reports.funnel import Period
from settings import Settings
from storage.database import session_for

router = APIRouter(
    tags=["reports"],
    dependencies=[API_KEY, Depends(requires("reports"))],
    responses=errors.responses(401, 403, 422, 503),
)


@router.get("/v1/reports/experiments")
async def experiments(
    settings: SettingsDep, journey: str | None = None, since: PeriodQuery = None, until: PeriodQuery = None
) -> ExperimentsReport:
    """Splits with assignments in the period (of `journey`, or all): customers, conversions
    (a purchase within the split's window after the assignment), conversion rate with its
    95 % Wilson interval, the difference to the holdout (or the first arm) with Newcombe's
    interval and a two-proportion z-test p-value, revenue per customer, the winner; and, with
    CYKLO_GLOBAL_HOLDOUT_PERCENT set, the programme's incremental revenue per customer."""
    return await asyncio.to_thread(read_experiments, settings, journey, Period.of(since, until))


def read_experiments(settings: Settings, journey: str | None, period: Period) -> ExperimentsReport:
    """The experiments report from the database settings name (also `cyklo report`'s section)."""
    with session_for(settings.database_url, read_only=True) as session:
        return experiments_report(
            session,
            journey_id=journey,
            since=period.since,
            until=period.until,
            holdout_percent=settings.global_holdout_percent,
        )
