"""GET /v1/reports/experiments: every split's arms compared, and the programme against the
global control group (reports/experiments.py computes it; this only serves it)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Depends

from api.dependencies import SettingsDep, requires
from reports.experiments import ExperimentsReport, experiments_report
from settings import Settings
from storage.database import session_for

router = APIRouter(tags=["reports"])


@router.get(
    "/v1/reports/experiments",
    response_model=ExperimentsReport,
    dependencies=[Depends(requires("reports"))],
)
async def experiments(
    settings: SettingsDep,
    journey: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ExperimentsReport:
    """Splits with assignments in [since, until) (of `journey`, or all): customers,
    conversions (a purchase within the window after the assignment), conversion rate with its
    95 % Wilson interval, the difference to the holdout (or the first arm) with Newcombe's
    interval and a two-proportion z-test p-value, revenue per customer; and, with
    CYKLO_GLOBAL_HOLDOUT_PERCENT set, the programme's incremental revenue per customer."""
    return await asyncio.to_thread(_report, settings, journey, since, until)


def _report(
    settings: Settings, journey: str | None, since: datetime | None, until: datetime | None
) -> ExperimentsReport:
    with session_for(settings.database_url, read_only=True) as session:
        return experiments_report(
            session,
            journey_id=journey,
            since=since,
            until=until,
            holdout_percent=settings.global_holdout_percent,
        )
