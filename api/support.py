"""Support: steer one customer's journey, list customers by stage (erasure: api/privacy.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api import errors
from api.auth import requires
from api.bounded_json import BoundedJsonRoute
from api.models import API_KEY, CustomerIdPath, JourneyIdPath, LimitQuery, StageQuery
from settings import Settings
from workflows.interface import JourneyView, SupportAction, workflow_id

Action = Literal["pause", "resume", "skip_wait", "move_to", "exit"]
ACTIONS: tuple[str, ...] = get_args(Action)

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
    action: Action,
    body: ActionRequest,
    request: Request,
    caller: str = Depends(requires("support:write")),
) -> JourneyView:
    """Pause, resume, skip the current wait, move to a stage, or exit; a refusal says why (409)."""
    settings: Settings = request.app.state.settings
    view = await run_action(
        request.app.state.client,
        customer_id,
        journey_id,
        action,
        body,
        caller,
        rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
    )
    return JourneyView.model_validate(view)


async def run_action(
    client: Client,
    customer_id: str,
    journey_id: str,
    action: str,
    body: ActionRequest,
    caller: str,
    *,
    rpc_timeout: timedelta | None = None,
) -> dict[str, Any]:
    if action not in ACTIONS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {action!r}: use {', '.join(ACTIONS)}")
    handle = client.get_workflow_handle(workflow_id(journey_id, customer_id))
    support_action = SupportAction(by=body.by or caller, reason=body.reason, stage=body.stage)
    try:
        view = await handle.execute_update(
            action,
            support_action,
            result_type=JourneyView,
            rpc_timeout=rpc_timeout,
        )
    except WorkflowUpdateFailedError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{action} refused: {error.cause or error}") from None
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            closed = await handle.describe()
        except RPCError:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"{customer_id!r} is not in journey {journey_id!r}"
            ) from None
        state = closed.status.name.lower() if closed.status else "closed"
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"{action} refused: the journey has ended ({state})"
        ) from None
    return view.model_dump(mode="json")


@router.get("/v1/journeys/{journey_id}/customers", dependencies=[Depends(requires("support:read"))])
async def customers_by_stage(
    journey_id: JourneyIdPath, request: Request, stage: StageQuery = None, limit: LimitQuery = 100
) -> StageListing:
    """Customers of a journey, optionally in one stage (Temporal visibility on the search attributes)."""
    settings: Settings = request.app.state.settings
    query = f"JourneyId = '{visibility_literal(journey_id)}'"
    if stage:
        query += f" AND JourneyStage = '{visibility_literal(stage)}'"
    found = []
    listing = request.app.state.client.list_workflows(
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
