"""A customer's rights over their data: a copy of all of it (GDPR art. 15), and erasure (art. 17).

Erasure ends the customer's journeys and deletes their workflow histories where the
Temporal server allows it; the answer says what was deleted and what was not, and why.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel
from sqlmodel import Session, col, select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.dependencies import ClientDep, JourneysDep, SettingsDep, requires
from api.models import CustomerContact, CustomerIdPath, FromRow
from api.support import visibility_literal
from definition.channels import Channel
from settings import Settings
from storage import consents, journey_versions
from storage.database import session_for
from storage.erasure import ErasedRows, erase_customer
from storage.models import (
    Conversion,
    Customer,
    Event,
    ExperimentAssignment,
    Message,
    StageEntry,
    utcnow,
)
from workflows.handle import Journeys
from workflows.interface import JourneyView

router = APIRouter(tags=["support"])


class ExportedProfile(CustomerContact):
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ConsentChange(FromRow):
    channel: Channel
    change: str
    """granted, withdrawn, suppressed, lifted, or noted (said, but nothing changed)"""
    origin: str
    """profile (the shop), sendgrid, or sms_reply (the customer's own SMS)"""
    source: str | None
    at: datetime


class ExportedConsents(BaseModel):
    email: bool
    sms: bool
    email_suppressed: bool
    sms_suppressed: bool
    source: str | None
    updated_at: datetime | None
    history: list[ConsentChange]


class ExportedEvent(FromRow):
    event_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any]


class ExportedMessage(FromRow):
    id: int
    journey_id: str
    journey_version: int
    stage: str
    step: str
    channel: Channel
    template: str
    transactional: bool
    test: bool
    status: str
    reason: str | None
    discount_code: str | None
    scheduled_at: datetime
    created_at: datetime
    updated_at: datetime


class ExportedStageEntry(FromRow):
    journey_id: str
    instance: str
    entry: int
    stage: str
    previous_stage: str | None
    journey_version: int
    entered_at: datetime


class ExportedConversion(FromRow):
    event_id: str
    """The purchase credited."""
    message_id: int
    journey_id: str
    template: str
    amount: float
    sent_at: datetime
    purchased_at: datetime


class ExportedAssignment(FromRow):
    journey_id: str
    split: str
    instance: str
    arm: str | None
    """None: the split's holdout."""
    by_winner: bool
    assigned_at: datetime


class CustomerExport(BaseModel):
    """Everything cyklo holds about one customer."""

    customer_id: str
    exported_at: datetime
    profile: ExportedProfile
    consents: ExportedConsents
    events: list[ExportedEvent]
    messages: list[ExportedMessage]
    stage_entries: list[ExportedStageEntry]
    conversions: list[ExportedConversion]
    """Purchases credited to a message (the reports' attribution)."""
    experiment_assignments: list[ExportedAssignment]
    journeys: dict[str, JourneyView]


class HistoryKept(BaseModel):
    workflow_id: str
    run_id: str
    reason: str


class ErasureReport(BaseModel):
    customer_id: str
    profile_deleted: bool
    journeys_ended: list[str]
    """Journeys that were running and were terminated."""
    events_deleted: int
    consent_records_deleted: int
    messages_kept: int
    """Ledger rows kept without personal data: ids, templates, statuses."""
    histories_deleted: int
    """Workflow runs (histories) deleted from Temporal."""
    histories_kept: list[HistoryKept]
    """Runs the server would not delete; they stay until the namespace's retention ends."""


@router.get(
    "/v1/customers/{customer_id}/export",
    response_model=CustomerExport,
    dependencies=[Depends(requires("support:read"))],
    responses={404: {"description": "no such customer"}},
)
async def export(
    customer_id: CustomerIdPath, settings: SettingsDep, journeys: JourneysDep, response: Response
) -> CustomerExport:
    """A copy of everything about the customer: profile, consents with their history,
    events with properties, messages, stage entries, the purchases credited to messages,
    experiment arms, and the state of each journey."""
    found = await asyncio.to_thread(_exported_rows, settings, customer_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id!r}")
    views: dict[str, JourneyView] = {}
    for journey_id in found.pop("journey_ids"):
        view = await journeys.of(journey_id, customer_id).state()
        if view is not None:
            views[journey_id] = view
    # Personal data: no proxy or browser may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return CustomerExport(customer_id=customer_id, exported_at=utcnow(), journeys=views, **found)


@router.delete(
    "/v1/customers/{customer_id}",
    response_model=ErasureReport,
    dependencies=[Depends(requires("support:write"))],
    responses={404: {"description": "no such customer"}},
)
async def erase(
    customer_id: CustomerIdPath, settings: SettingsDep, client: ClientDep, journeys: JourneysDep
) -> ErasureReport:
    """GDPR erasure: journeys ended and their histories deleted, profile, events and consent
    history deleted, ledger rows kept without personal data."""
    report = await erase_everywhere(settings, client, journeys, customer_id)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id!r}")
    return report


async def erase_everywhere(
    settings: Settings, client: Client, journeys: Journeys, customer_id: str
) -> ErasureReport | None:
    """Erase the customer wherever cyklo keeps them (None: cyklo knew nothing of them); for
    `DELETE /v1/customers/{id}` and a shop's own erasure request alike."""
    journey_ids = await asyncio.to_thread(_journey_ids, settings)
    ended = [
        journey_id
        for journey_id in journey_ids
        if await journeys.of(journey_id, customer_id).end("customer erased")
    ]
    rows: ErasedRows = await asyncio.to_thread(_erase_rows, settings, customer_id)
    runs = await _runs_of(client, journeys, customer_id, journey_ids)
    deleted, kept = await _delete_histories(client, runs)
    if not rows.profile_deleted and not ended and not rows.events_deleted and not runs:
        return None
    return ErasureReport(
        customer_id=customer_id,
        profile_deleted=rows.profile_deleted,
        journeys_ended=ended,
        events_deleted=rows.events_deleted,
        consent_records_deleted=rows.consent_records_deleted,
        messages_kept=rows.messages_kept,
        histories_deleted=deleted,
        histories_kept=kept,
    )


def _journey_ids(settings: Settings) -> list[str]:
    with session_for(settings.database_url) as session:
        return journey_versions.published_ids(session)


def _erase_rows(settings: Settings, customer_id: str) -> ErasedRows:
    with session_for(settings.database_url) as session:
        return erase_customer(session, customer_id)


def _exported_rows(settings: Settings, customer_id: str) -> dict[str, Any] | None:
    with session_for(settings.database_url, read_only=True) as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            return None
        events = session.exec(
            select(Event).where(Event.customer_id == customer_id).order_by(col(Event.occurred_at))
        ).all()
        messages = session.exec(
            select(Message).where(Message.customer_id == customer_id).order_by(col(Message.scheduled_at))
        ).all()
        history = consents.history(session, customer_id)
        journey_ids = journey_versions.published_ids(session)
        entries = _rows_of(session, StageEntry, customer_id, StageEntry.entered_at)
        credited = _rows_of(session, Conversion, customer_id, Conversion.purchased_at)
        assignments = _rows_of(session, ExperimentAssignment, customer_id, ExperimentAssignment.assigned_at)
    return {
        "profile": ExportedProfile.model_validate(customer),
        "consents": ExportedConsents(
            email=customer.consent_email,
            sms=customer.consent_sms,
            email_suppressed=customer.email_suppressed,
            sms_suppressed=customer.sms_suppressed,
            source=customer.consent_source,
            updated_at=customer.consent_updated_at,
            history=[ConsentChange.model_validate(row) for row in history],
        ),
        "events": [ExportedEvent.model_validate(event) for event in events],
        "messages": [ExportedMessage.model_validate(message) for message in messages],
        "stage_entries": [ExportedStageEntry.model_validate(row) for row in entries],
        "conversions": [ExportedConversion.model_validate(row) for row in credited],
        "experiment_assignments": [ExportedAssignment.model_validate(row) for row in assignments],
        "journey_ids": journey_ids,
    }


def _rows_of(session: Session, table: Any, customer_id: str, order: Any) -> list[Any]:
    return list(
        session.exec(select(table).where(table.customer_id == customer_id).order_by(col(order))).all()
    )


async def _runs_of(
    client: Client, journeys: Journeys, customer_id: str, journey_ids: list[str]
) -> list[tuple[str, str]]:
    """(workflow id, run id) of every run of the customer's journeys, closed ones included.

    Visibility lists them all, also journeys no longer published and runs a re-entry
    left behind; a server without visibility (the time-skipping test server) still
    shows each journey's latest run and the continue-as-new chain before it."""
    runs: set[tuple[str, str]] = set()
    try:
        async for execution in client.list_workflows(f"CustomerId = '{visibility_literal(customer_id)}'"):
            runs.add((execution.id, execution.run_id))
    except RPCError as error:
        if error.status not in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.INVALID_ARGUMENT):
            raise
    for journey_id in journey_ids:
        journey = journeys.of(journey_id, customer_id)
        runs.update((journey.workflow.id, run_id) for run_id in await journey.run_ids())
    return sorted(runs)


async def _delete_histories(client: Client, runs: list[tuple[str, str]]) -> tuple[int, list[HistoryKept]]:
    deleted, kept = 0, []
    for workflow, run_id in runs:
        request = DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow, run_id=run_id),
        )
        try:
            await client.workflow_service.delete_workflow_execution(request)
            deleted += 1
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                continue  # deleted meanwhile, or by an earlier erase
            reason = {
                RPCStatusCode.UNIMPLEMENTED: "this Temporal server cannot delete histories",
                RPCStatusCode.PERMISSION_DENIED: "the Temporal credentials may not delete histories",
            }.get(error.status, f"Temporal answered {error.status.name}")
            kept.append(HistoryKept(workflow_id=workflow, run_id=run_id, reason=reason))
    return deleted, kept
