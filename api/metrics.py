"""`GET /metrics` on the API (a key with the `metrics` scope): events accepted and rejected by
reason, customers per journey stage from Temporal visibility, and everything else the process
registers (Temporal's SDK metrics; in `cyklo dev`, where the worker shares the process, its
send metrics too)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import Counter
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio.client import Client

from api import errors
from api.dependencies import ClientDep, SettingsDep, StageCensusDep, requires
from api.models import API_KEY, EventResult
from definition.model import Journey
from process.metrics import exposition
from reports.lifecycle import StagesNow, published_versions
from settings import Settings
from storage.database import session_for
from visibility import stage_census

log = logging.getLogger(__name__)

CENSUS_MAX_AGE_SECONDS = 30.0
"""Visibility is asked at most this often, however often Prometheus scrapes."""
CENSUS_TIMEOUT_SECONDS = 5.0
"""A scrape waits no longer for visibility: it then shows the last counts (or none)."""
EVENT_FIELDS = ("event_id", "customer_id", "type", "occurred_at", "properties")

EVENTS = Counter(
    "cyklo_events",
    "Events through api.ingest (cyklo's API and every other door), by outcome: accepted, "
    "duplicate, rejected (bad input), failed (Temporal unreachable: not kept)",
    ["outcome"],
)
EVENTS_REJECTED = Counter(
    "cyklo_events_rejected",
    "Rejected events by the reason of their first error: the field at fault, personal_data "
    "(an address or number in a property), unknown_field, not_an_object",
    ["reason"],
)


def rejection_reason(result: EventResult) -> str:
    """A reason from a fixed vocabulary: a label must never carry what the shop sent (a
    property's name can be anything, a value personal data)."""
    if not result.errors:
        return "unknown"
    first = result.errors[0]
    head = first.field.split(".", 1)[0]
    if head == "properties" and "personal data" in first.message:
        return "personal_data"
    if head in EVENT_FIELDS:
        return head
    return "not_an_object" if first.field == "body" else "unknown_field"


SEGMENT_FIELDS = {
    "messageId": "event_id",
    "userId": "customer_id",
    "anonymousId": "customer_id",
    "type": "type",
    "event": "type",
    "timestamp": "occurred_at",
    "sentAt": "occurred_at",
    "properties": "properties",
    "traits": "properties",
}
"""A Segment call's field as the event field it becomes, for a refusal's reason label."""


def count_refused_before_routing(fields: Iterable[str]) -> None:
    """Calls of another door (Segment) refused while translating, before route_all could
    count them: rejected, by the cyklo field their first problem is about."""
    for field in fields:
        EVENTS.labels("rejected").inc()
        EVENTS_REJECTED.labels(SEGMENT_FIELDS.get(field.split(".", 1)[0], "unknown_field")).inc()


def count_events(results: Iterable[EventResult]) -> None:
    for result in results:
        EVENTS.labels(result.status).inc()
        if result.status == "rejected":
            EVENTS_REJECTED.labels(rejection_reason(result)).inc()


class StageCensus(Collector):
    """Running customers per journey and stage (cyklo_journey_customers), from visibility,
    asked again on a scrape once the last answer is CENSUS_MAX_AGE_SECONDS old."""

    def __init__(self) -> None:
        self.counts: list[StagesNow] = []
        self.stages: dict[str, set[str]] = {}
        self.asked_at = float("-inf")
        self._asking = asyncio.Lock()

    async def refresh(self, settings: Settings, client: Client) -> None:
        async with self._asking:
            if time.monotonic() - self.asked_at < CENSUS_MAX_AGE_SECONDS:
                return
            self.asked_at = time.monotonic()
            journeys: dict[str, dict[int, Journey]] = {}
            try:
                journeys = await asyncio.to_thread(_published, settings)
                found = await asyncio.wait_for(
                    stage_census(settings, journeys, client), CENSUS_TIMEOUT_SECONDS
                )
            except TimeoutError:
                found = f"Temporal at {settings.temporal_address} did not answer within {CENSUS_TIMEOUT_SECONDS} s"
            except Exception as error:  # the database: the scrape still gets every other metric
                found = f"published journeys unreadable ({type(error).__name__})"
            if isinstance(found, str):
                log.warning("customers per stage unknown: %s", found)
                return
            self.counts = found
            self.stages = {
                journey_id: {stage for definition in versions.values() for stage in definition.stages}
                for journey_id, versions in journeys.items()
            }

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "cyklo_journey_customers",
            "Running customers per journey and stage, from Temporal visibility (at most 30 s old)",
            labels=["journey", "stage"],
        )
        for census in self.counts:
            # Every stage, zeros included: a stage that empties must fall to 0, not vanish.
            for stage in sorted(self.stages.get(census.journey_id, set()) | set(census.by_stage)):
                gauge.add_metric([census.journey_id, stage], census.by_stage.get(stage, 0))
        yield gauge


def _published(settings: Settings) -> dict[str, dict[int, Journey]]:
    with session_for(settings.database_url, read_only=True) as session:
        return published_versions(session)


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    dependencies=[API_KEY, Depends(requires("metrics"))],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **errors.responses(401, 403),
    },
)
async def metrics(settings: SettingsDep, client: ClientDep, census: StageCensusDep) -> Response:
    """For Prometheus (`authorization: {credentials: KEY}` in the scrape config): events by
    outcome and rejection reason, customers per stage, Temporal's SDK metrics."""
    await census.refresh(settings, client)
    return Response(exposition(census), media_type=CONTENT_TYPE_LATEST)
