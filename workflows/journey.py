"""The journey workflow: one per (customer, journey), a thin shell around the journey machine.

The machine (workflows/machine.py) decides; this shell performs what it asks for: timers,
the send activity, search attributes, continue-as-new. Deterministic: no I/O (the definition
arrives through a local activity, so replays read it from history), no clock but
workflow.now(), no randomness at all (split arms are a hash of the customer id, so they are
sticky; a decided winner arrives through the local activity that records the assignment).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, assert_never

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

with workflow.unsafe.imports_passed_through():
    from definition.program import compile_journey
    from workflows.interface import (
        ArmAssigned,
        JourneyEvent,
        JourneyInput,
        JourneyResult,
        JourneyState,
        JourneyView,
        PreparedJourney,
        PrepareRequest,
        SendOutcome,
        StageEntered,
        SupportAction,
        SupportKind,
    )
    from workflows.machine import (
        AssignArm,
        CheckVersion,
        ContinueAsNew,
        Done,
        Machine,
        SendMessage,
        Sleep,
        at_point,
        invalid_properties,
    )
    from workflows.retries import SEND_RETRY

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY_ID = SearchAttributeKey.for_keyword("JourneyId")
JOURNEY_STAGE = SearchAttributeKey.for_keyword("JourneyStage")
JOURNEY_VERSION = SearchAttributeKey.for_int("JourneyVersion")
SEARCH_ATTRIBUTES = (CUSTOMER_ID, JOURNEY_ID, JOURNEY_STAGE, JOURNEY_VERSION)
"""What visibility knows of every journey: the server must have each registered."""

VERSION_SEARCH_ATTRIBUTE = "journey-version-search-attribute"
"""Patch: the stage's search attributes carry the version too (for `cyklo publish --plan`)."""

PASSTHROUGH_MODULES = ("definition", "jinja2", "markupsafe", "pydantic", "pydantic_core", "yaml", "zoneinfo")
"""Pure libraries the workflow uses, loaded once outside the sandbox: Jinja2 imports parts
of itself lazily and guards its caches with locks, which the sandbox would refuse."""


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox for JourneyWorkflow: every worker and replayer must use this one."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )




@workflow.defn(name="Journey")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        # Set up here, not in run(), so the signal that starts the workflow
        # (signal-with-start) finds the inbox ready.
        self.input = input
        self.state = input.state or JourneyState(instance="")
        self.inbox: list[JourneyEvent] = list(input.pending)
        self.machine = Machine(
            self.state,
            workflow_id=workflow.info().workflow_id,
            journey_id=input.journey_id,
            customer_id=input.customer_id,
            events_per_run=input.events_per_run,
            patched=workflow.patched,
            warn=lambda message: workflow.logger.warning("%s", message),
            check_event=self._invalid_properties,
        )
        self.support_changed = False

    @workflow.signal(name="event")
    def event(self, event: JourneyEvent) -> None:
        # Kept tiny: the main loop does the work, in arrival order, between awaits.
        self.inbox.append(event)

    @workflow.query(name="state")
    def view(self) -> JourneyView:
        return self.machine.view(self._now())

    # --- support actions: updates whose validators refuse with a reason -----------------

    @workflow.update(name=SupportKind.PAUSE)
    def pause(self, action: SupportAction) -> JourneyView:
        return self._support(SupportKind.PAUSE, action)

    @pause.validator
    def _can_pause(self, action: SupportAction) -> None:
        self._refuse(SupportKind.PAUSE, action)

    @workflow.update(name=SupportKind.RESUME)
    def resume(self, action: SupportAction) -> JourneyView:
        return self._support(SupportKind.RESUME, action)

    @resume.validator
    def _can_resume(self, action: SupportAction) -> None:
        self._refuse(SupportKind.RESUME, action)

    @workflow.update(name=SupportKind.SKIP_WAIT)
    def skip_wait(self, action: SupportAction) -> JourneyView:
        return self._support(SupportKind.SKIP_WAIT, action)

    @skip_wait.validator
    def _can_skip_wait(self, action: SupportAction) -> None:
        self._refuse(SupportKind.SKIP_WAIT, action)

    @workflow.update(name=SupportKind.MOVE_TO)
    def move_to(self, action: SupportAction) -> JourneyView:
        return self._support(SupportKind.MOVE_TO, action)

    @move_to.validator
    def _can_move_to(self, action: SupportAction) -> None:
        self._refuse(SupportKind.MOVE_TO, action)

    @workflow.update(name=SupportKind.EXIT)
    def exit(self, action: SupportAction) -> JourneyView:
        return self._support(SupportKind.EXIT, action)

    @exit.validator
    def _can_exit(self, action: SupportAction) -> None:
        self._refuse(SupportKind.EXIT, action)

    @workflow.update(name=SupportKind.UPGRADE)
    async def upgrade(self, action: SupportAction) -> JourneyView:
        prepared = await self._prepare(newer_than=self.state.version)
        newest = compile_journey(prepared.definition_json) if prepared.definition_json else None
        refusal = self.machine.upgrade_refusal(newest, prepared.version)
        if refusal is not None:
            raise ApplicationError(refusal)
        assert newest is not None
        self.machine.upgrade(newest, prepared.version, action, self._now())
        self._publish_entered()
        self.support_changed = True
        return self.view()

    @upgrade.validator
    def _can_upgrade(self, action: SupportAction) -> None:
        self._refuse(SupportKind.UPGRADE, action)

    def _refuse(self, kind: SupportKind, action: SupportAction) -> None:
        refusal = self.machine.refusal(kind, action)
        if refusal is not None:
            raise ApplicationError(refusal)

    def _support(self, kind: SupportKind, action: SupportAction) -> JourneyView:
        self.machine.support(kind, action, self._now())
        self._publish_entered()
        # Wake the main loop: a resumed, skipped or moved journey has work to do now.
        self.support_changed = True
        return self.view()

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        if not self.state.instance:
            self.state.instance = str(workflow.uuid4())[:8]
        prepared = await self._prepare(version=self.state.version or input.version)
        self.machine.load(compile_journey(prepared.definition_json), prepared.version, prepared.timezone)
        if self.state.stage is not None:
            self._publish_stage(self.state.stage)

        while True:
            self.support_changed = False
            effect = self.machine.turn(
                self.inbox, self._now(), suggest_new_run=workflow.info().is_continue_as_new_suggested()
            )
            if isinstance(effect, CheckVersion):
                # The stage just entered is published once, with the version it runs on.
                await self._adopt_newer(effect)
                continue
            self._publish_entered()
            match effect:
                case SendMessage():
                    await self._send(effect)
                case AssignArm():
                    await self._assign(effect)
                case Sleep():
                    await self._sleep(effect.until)
                case ContinueAsNew():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(
                        JourneyInput(
                            journey_id=input.journey_id,
                            customer_id=input.customer_id,
                            version=self.state.version,
                            events_per_run=input.events_per_run,
                            clock_offset=input.clock_offset,
                            state=self.machine.carried_state(),
                            pending=self.inbox,
                        )
                    )
                case Done():
                    break
                case _:
                    assert_never(effect)

        await workflow.wait_condition(workflow.all_handlers_finished)
        return JourneyResult(
            journey_id=input.journey_id,
            customer_id=input.customer_id,
            stage=self.state.stage,
            exited=self.state.exited or "completed",
        )

    def _now(self) -> datetime:
        return workflow.now() + self.input.clock_offset

    async def _prepare(
        self, *, version: int | None = None, newer_than: int | None = None, entered: StageEntered | None = None
    ) -> PreparedJourney:
        """The definition from the database, through a local activity: replays read it from
        history. Asked at run start and, for a newer version, at stage entries and upgrades —
        rather than told by a signal at publish, which would wake every customer at once."""
        return await workflow.execute_local_activity(
            "prepare_journey",
            PrepareRequest(
                journey_id=self.input.journey_id,
                customer_id=self.input.customer_id,
                version=version,
                newer_than=newer_than,
                entered=entered,
            ),
            result_type=PreparedJourney,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )

    async def _adopt_newer(self, check: CheckVersion) -> None:
        prepared = await self._prepare(newer_than=check.current, entered=check.entered)
        newest = compile_journey(prepared.definition_json) if prepared.definition_json else None
        self.machine.adopt(newest, prepared.version, self._now())

    async def _assign(self, assign: AssignArm) -> None:
        """The arm through a local activity that records it: a winner decided in the database
        reaches the workflow from history on replay, never from a read in workflow code."""
        answer = await workflow.execute_local_activity(
            "record_assignment",
            assign.request,
            result_type=ArmAssigned,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )
        self.machine.assigned(assign, answer)

    async def _sleep(self, until: datetime | None) -> None:
        """Until `until`, an event or a support action, whichever comes first."""
        timeout = (until - self._now()) if until is not None else None
        if timeout is not None and timeout <= timedelta(0):
            return
        try:
            await workflow.wait_condition(lambda: bool(self.inbox) or self.support_changed, timeout=timeout)
        except TimeoutError:
            pass  # the wake-up time came: the next turn handles whatever is due

    async def _send(self, send: SendMessage) -> None:
        try:
            outcome: SendOutcome = await workflow.execute_activity(
                "send_message",
                send.request,
                result_type=SendOutcome,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SEND_RETRY,
            )
        except ActivityError as error:
            # Retries ran out (the database stayed down for hours): this message is lost,
            # the journey is not.
            outcome = SendOutcome(
                message_id=0, status="failed", reason=f"send gave up: {error.cause or error}"
            )
        self.machine.sent(send, outcome, self._now())

    def _invalid_properties(self, event: JourneyEvent) -> list[str]:
        return invalid_properties(event)

    def _publish_entered(self) -> None:
        while self.machine.entered:
            self._publish_stage(self.machine.entered.pop(0))

    def _publish_stage(self, stage: str) -> None:
        attributes: list[SearchAttributeUpdate[Any]] = [
            CUSTOMER_ID.value_set(self.input.customer_id),
            JOURNEY_ID.value_set(self.input.journey_id),
            JOURNEY_STAGE.value_set(stage),
        ]
        version_too = at_point(VERSION_SEARCH_ATTRIBUTE, self.state.stage_entries)
        if self.state.version is not None and workflow.patched(version_too):
            attributes.append(JOURNEY_VERSION.value_set(self.state.version))
        workflow.upsert_search_attributes(attributes)
        workflow.set_current_details(f"{self.input.journey_id}: stage {stage}")
