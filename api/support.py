"""Support: steer one customer's journey, list customers by stage (erasure: api/privacy.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from api import errors
from api.bounded_json import BoundedJsonRoute
from api.dependencies import ClientDep, JourneysDep, SettingsDep, requires
from api.models import API_KEY, CustomerIdPath, JourneyIdPath, LimitQuery, StageQuery
from workflows.handle import ActionRefused, Journeys, NoJourney
from workflows.interface import JourneyView, SupportAction, SupportKind

router = APIRouter(
    tags=["support"],
    route_class=BoundedJsonRoute,
    dependencies=[API_KEY],
    responses=errors.responses(401, 403, 404, 422, 503),
)


class ActionRequest(BaseModel):
    by: str | None = Field(default=None, max_length=100)
    """The support person; defaults to the API key's label."""
    reason: str = Field(default="", max_length=500)
    stage: str | None = Field(default=None, max_length=100)


class CustomerInStage(BaseModel):
    customer_id: str | None
    stage: str | None
    status: str | None


class StageListing(BaseModel):
    journey_id: str
    stage: str | None
    query: str
    """The Temporal visibility query, to paste into the Web UI."""
    customers: list[CustomerInStage]


@router.post(
    "/v1/customers/{customer_id}/journeys/{journey_id}/{action}",
    responses=errors.responses(409, 413),
)
async def act(
    customer_id: CustomerIdPath,
    journey_id: JourneyIdPath,
    action: SupportKind,
    body: ActionRequest,
    journeys: JourneysDep,
    caller: Annotated[str, Depends(requires("support:write"))],
) -> JourneyView:
    """Pause, resume, skip the current wait, move to a stage, exit, or upgrade to the newest
    published version now; a refusal says why (409)."""
    return await run_action(journeys, customer_id, journey_id, action, body, caller)


async def run_action(
    journeys: Journeys,
    customer_id: str,
    journey_id: str,
    action: str,
    body: ActionRequest,
    caller: str,
) -> JourneyView:
    """The action on the journey, or the HTTP refusal that says why not (the API's and the
    support page's)."""
    try:
        chosen = SupportKind(action)
    except ValueError:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no action {action!r}: use {', '.join(SupportKind)}"
        ) from None
    request = SupportAction(by=body.by or caller, reason=body.reason, stage=body.stage)
    try:
        return await journeys.of(journey_id, customer_id).perform(chosen, request)
    except ActionRefused as refused:
        raise HTTPException(status.HTTP_409_CONFLICT, str(refused)) from None
    except NoJourney as missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(missing)) from None


@router.get("/v1/journeys/{journey_id}/customers", dependencies=[Depends(requires("support:read"))])
async def customers_by_stage(
    journey_id: JourneyIdPath,
    client: ClientDep,
    settings: SettingsDep,
    stage: StageQuery = None,
    limit: LimitQuery = 100,
) -> StageListing:
    """Customers of a journey, optionally in one stage (Temporal visibility on the search attributes)."""
    query = f"JourneyId = '{visibility_literal(journey_id)}'"
    if stage:
        query += f" AND JourneyStage = '{visibility_literal(stage)}'"
    found = []
    listing = client.list_workflows(
        query, limit=limit, rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds)
    )
    async for execution in listing:
        attributes = execution.typed_search_attributes
        found.append(
            CustomerInStage(
                customer_id=next((pair.value for pair in attributes if pair.key.name == "CustomerId"), None),
                stage=next((pair.value for pair in attributes if pair.key.name == "JourneyStage"), None),
                status=execution.status.name if execution.status else None,
            )
        )
    return StageListing(journey_id=journey_id, stage=stage, query=query, customers=found)


def visibility_literal(value: str) -> str:
    """`value` as a string literal of a Temporal visibility query (erasure and the stage list share it)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
