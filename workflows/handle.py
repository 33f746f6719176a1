"""One typed handle to a customer's journey: its view, delivering an event, a support action.

Every caller (API, support page, CLI through the API, simulation, bench) reaches a journey
workflow through here, by the workflow's own methods, so a renamed query, signal or update
is a type error, not a string that silently stops matching.
"""

from __future__ import annotations

from datetime import timedelta
from typing import assert_never, cast

from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from workflows.interface import (
    JourneyEvent,
    JourneyInput,
    JourneyResult,
    JourneyView,
    SupportAction,
    SupportKind,
    workflow_id,
)
from workflows.journey import CUSTOMER_ID, JOURNEY_ID, JourneyWorkflow

EVENT_SIGNAL = "event"
"""The name of JourneyWorkflow.event: signal-with-start takes the signal by name only
(tests/test_handle.py checks it against the workflow's definition)."""


def _update(action: SupportKind) -> UpdateMethodMultiParam[[JourneyWorkflow, SupportAction], JourneyView]:
    match action:
        case SupportKind.PAUSE:
            return JourneyWorkflow.pause
        case SupportKind.RESUME:
            return JourneyWorkflow.resume
        case SupportKind.SKIP_WAIT:
            return JourneyWorkflow.skip_wait
        case SupportKind.MOVE_TO:
            return JourneyWorkflow.move_to
        case SupportKind.EXIT:
            return JourneyWorkflow.exit
        case SupportKind.UPGRADE:
            # Async (it asks for the newest version): typed as returning its coroutine, which
            # execute_update awaits to the same JourneyView.
            return cast(UpdateMethodMultiParam[[JourneyWorkflow, SupportAction], JourneyView], JourneyWorkflow.upgrade)
        case _:
            assert_never(action)


class NoJourney(LookupError):
    """The customer has never been in this journey (or its history is gone)."""


class ActionRefused(Exception):
    """The journey said no (already paused, unknown stage, ended, ...): `reason` says why."""

    def __init__(self, action: SupportKind, reason: str) -> None:
        super().__init__(f"{action} refused: {reason}")
        self.action = action
        self.reason = reason


class JourneyHandle:
    """One customer's journey, by journey id and customer id: there may be no such workflow."""

    def __init__(
        self,
        client: Client,
        journey_id: str,
        customer_id: str,
        *,
        rpc_timeout: timedelta | None = None,
    ) -> None:
        self.client = client
        self.journey_id = journey_id
        self.customer_id = customer_id
        self.rpc_timeout = rpc_timeout
        self.workflow: WorkflowHandle[JourneyWorkflow, JourneyResult] = client.get_workflow_handle_for(
            JourneyWorkflow.run, workflow_id(journey_id, customer_id)
        )

    async def state(self) -> JourneyView | None:
        """The journey as support sees it; None when the customer never entered it."""
        try:
            return await self.workflow.query(JourneyWorkflow.view, rpc_timeout=self.rpc_timeout)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def run_ids(self) -> list[str]:
        """The runs of the journey's continue-as-new chain, oldest first ([] when none)."""
        found: list[str] = []
        try:
            run_id: str | None = (await self.workflow.describe(rpc_timeout=self.rpc_timeout)).run_id
            while run_id:
                found.insert(0, run_id)
                run = self.client.get_workflow_handle(self.workflow.id, run_id=run_id)
                run_id = None
                async for first in run.fetch_history_events(page_size=1, rpc_timeout=self.rpc_timeout):
                    run_id = first.workflow_execution_started_event_attributes.continued_execution_run_id
                    break
        except RPCError as error:
            # Deleted meanwhile (erasure, retention): the runs found so far are all there is.
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        return found

    async def history(self, run_id: str) -> WorkflowHistory:
        run = self.client.get_workflow_handle(self.workflow.id, run_id=run_id)
        return await run.fetch_history(rpc_timeout=self.rpc_timeout)

    async def deliver(self, event: JourneyEvent) -> bool:
        """The event to the running journey; False when none runs (the event matters to it
        only once the customer has entered)."""
        try:
            await self.workflow.signal(JourneyWorkflow.event, event, rpc_timeout=self.rpc_timeout)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def enter(self, event: JourneyEvent, input: JourneyInput, task_queue: str) -> None:
        """The event to the journey, starting it first when it is not running (signal-with-start)."""
        await self.client.start_workflow(
            JourneyWorkflow.run,
            input,
            id=self.workflow.id,
            task_queue=task_queue,
            start_signal=EVENT_SIGNAL,
            start_signal_args=[event],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            rpc_timeout=self.rpc_timeout,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(CUSTOMER_ID, self.customer_id),
                    SearchAttributePair(JOURNEY_ID, self.journey_id),
                ]
            ),
        )

    async def end(self, reason: str) -> bool:
        """Terminate the running journey (erasure); False when none runs."""
        try:
            await self.workflow.terminate(reason, rpc_timeout=self.rpc_timeout)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def perform(self, action: SupportKind, request: SupportAction) -> JourneyView:
        """The support action's outcome; ActionRefused says why the journey declined it,
        NoJourney that there is no such journey."""
        try:
            return await self.workflow.execute_update(_update(action), request, rpc_timeout=self.rpc_timeout)
        except WorkflowUpdateFailedError as error:
            raise ActionRefused(action, str(error.cause or error)) from None
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        # No running workflow: an ended journey is told apart from one never entered.
        try:
            closed = await self.workflow.describe(rpc_timeout=self.rpc_timeout)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            raise NoJourney(f"{self.customer_id!r} is not in journey {self.journey_id!r}") from None
        ended = closed.status.name.lower() if closed.status else "closed"
        raise ActionRefused(action, f"the journey has ended ({ended})")


class Journeys:
    """Handles to the journeys of one Temporal client, each call bounded by `rpc_timeout`."""

    def __init__(self, client: Client, rpc_timeout: timedelta | None = None) -> None:
        self.client = client
        self.rpc_timeout = rpc_timeout

    def of(self, journey_id: str, customer_id: str) -> JourneyHandle:
        return JourneyHandle(self.client, journey_id, customer_id, rpc_timeout=self.rpc_timeout)
