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
from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
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
        SeedRequest,
        SendOutcome,
        StageEntered,
        SupportAction,
        SupportKind,
    )
    from workflows.machine import (
        ADOPT_AT_STAGE_ENTRY,
        RECORD_EXPERIMENT_ASSIGNMENTS,
        SEED_METRICS_FROM_HISTORY,
        SKIP_INVALID_EVENTS,
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
"""Patch: the stage's search attributes carry the version too (for `cyklo publish --plan`).
Asked when the stage is published, after the preparation's local activity: kept for the
histories recorded so (VERSION_ATTRIBUTE_DECIDED_FIRST replaces it)."""

VERSION_ATTRIBUTE_DECIDED_FIRST = "journey-version-attribute-decided-first"
"""Patch: whether the version goes with the stage's search attributes is asked before any
local activity, never after one. A local activity's result can be recorded in the workflow
task that scheduled it while the code after it runs in the next task; replay resolves it in
the first, so a patch asked after it was looked for in the wrong task and the history failed
to replay (seen: tests/test_event_rules.py, once in two runs on a loaded machine). Asked per
point until it answers yes, then known for the rest of the run."""

RECORD_ENTRY_WITH_ITS_SEND = "record-entry-with-its-send"
"""Patch: the stage a new enrolment enters in the task that read the newest version is not
asked for a newer one (prepare_journey has just answered); the send that follows records the
entry with its claim instead of a second local activity (or prepare_journey does, when no
send follows)."""
RECORD_EVERY_ENTRY_WITH_ITS_SEND = "record-every-entry-with-its-send"
"""Patch: every stage entry, not only a new enrolment's, is recorded with the claim of the
send that follows it (or by prepare_journey when no send follows); the entry's own call to
prepare_journey only reads. Under SQLite's single writer a purchase's write transactions are
what it waits for (docs/benchmarks.md): this is one fewer. Decided once per run, in its first
task: a run begun before it keeps recording entries as it did."""
DEFINITION_DEFLATED = "definition-deflated"
"""Patch: prepare_journey answers with the definition deflated (PreparedJourney.definition_deflated),
a fifth of the bytes in the marker every run's history begins with. Decided once per run, in
its first task, like RECORD_EVERY_ENTRY_WITH_ITS_SEND."""
SENDS_AS_LOCAL_ACTIVITIES = "sends-as-local-activities"
"""Patch: a send runs as a local activity in the workflow task that decided it, not as an
activity task of its own. An activity task costs the server a dispatch through matching and
the journey a second workflow task (six history events and two round trips per message); the
ledger, not the activity's kind, is what keeps a send at most once (a retry or a re-run after
a crash finds its row), so nothing is lost by running it where the decision is made."""
FIRST_PATCH_GENERATION = frozenset(
    {
        RECORD_ENTRY_WITH_ITS_SEND,
        ADOPT_AT_STAGE_ENTRY,
        RECORD_EXPERIMENT_ASSIGNMENTS,
        SEED_METRICS_FROM_HISTORY,
        SKIP_INVALID_EVENTS,
        VERSION_ATTRIBUTE_DECIDED_FIRST,
        VERSION_SEARCH_ATTRIBUTE,
    }
)
SECOND_PATCH_GENERATION = FIRST_PATCH_GENERATION | {SENDS_AS_LOCAL_ACTIVITIES}
PATCH_GENERATIONS = (
    ("journey-every-patch-from-the-start", FIRST_PATCH_GENERATION),
    ("journey-every-patch-from-the-start@2", SECOND_PATCH_GENERATION),
    (
        "journey-every-patch-from-the-start@3",
        SECOND_PATCH_GENERATION | {RECORD_EVERY_ENTRY_WITH_ITS_SEND, DEFINITION_DEFLATED},
    ),
)
"""Patches: a run whose history holds one of these markers began on code that takes every
change of its set, so each answers yes without a marker of its own. Every marker costs a run
two history events (the marker and Temporal's TemporalChangeVersion upsert, a visibility
write), and the per-point ones cost them again at every stage entry: a sign-up asked three.
A run asks the newest generation first, in its first task; runs recorded before a generation
existed answer no to it and go on with the one they began with (or ask each patch where they
always did, before the first). A patch added later is asked on its own by older runs and
joins the sets of a new generation, appended here: never change a set already released."""
PASSTHROUGH_MODULES = ("definition", "jinja2", "markupsafe", "pydantic", "pydantic_core", "yaml", "zoneinfo")
"""Pure libraries the workflow uses, loaded once outside the sandbox: Jinja2 imports parts
of itself lazily and guards its caches with locks, which the sandbox would refuse."""


def workflow_runner(*, sandboxed: bool = True) -> WorkflowRunner:
    """How JourneyWorkflow runs: in the sandbox every replayer and test uses (with these
    passthrough modules), or without it (Settings.workflow_sandbox says why)."""
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
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
            patched=self._patched,
            warn=lambda message: workflow.logger.warning("%s", message),
            check_event=self._invalid_properties,
        )
        self.support_changed = False
        self.version_attribute_decided = False
        self.patches_from_the_start: frozenset[str] | None = None
        self.every_entry_with_its_send = False
        self.definition_deflated = False
        self.unrecorded_entries: list[StageEntered] = []
        """Stage entries the next send records with its claim (RECORD_ENTRY_WITH_ITS_SEND)."""

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
        definition = prepared.definition()
        newest = compile_journey(definition) if definition else None
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
        self.every_entry_with_its_send = self._patched(RECORD_EVERY_ENTRY_WITH_ITS_SEND)
        self.definition_deflated = self._patched(DEFINITION_DEFLATED)
        seed = None
        if input.state is None and self._patched(SEED_METRICS_FROM_HISTORY):
            seed = SeedRequest(at=self._now(), handled_event_ids=[event.event_id for event in self.inbox])
        requested = self.state.version or input.version
        prepared = await self._prepare(version=requested, seed=seed)
        if prepared.seed is not None:
            self.machine.seed(prepared.seed)
        self.machine.load(compile_journey(prepared.definition()), prepared.version, prepared.timezone)
        if self.state.stage is not None:
            self._publish_stage(self.state.stage)

        newest_just_read = requested is None
        while True:
            self.support_changed = False
            effect = self.machine.turn(
                self.inbox, self._now(), suggest_new_run=workflow.info().is_continue_as_new_suggested()
            )
            if isinstance(effect, CheckVersion):
                if newest_just_read and self._patched(RECORD_ENTRY_WITH_ITS_SEND):
                    # Read in this very task: there is nothing newer to adopt.
                    self.unrecorded_entries.append(effect.entered)
                    self.machine.adopt(None, effect.current, self._now())
                else:
                    # The stage just entered is published once, with the version it runs on.
                    await self._adopt_newer(effect)
                continue
            newest_just_read = False
            self._publish_entered()
            if not isinstance(effect, SendMessage):
                await self._record_entries()
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
        self,
        *,
        version: int | None = None,
        newer_than: int | None = None,
        entered: StageEntered | None = None,
        seed: SeedRequest | None = None,
    ) -> PreparedJourney:
        """The definition from the database, through a local activity: replays read it from
        history. Asked at run start and, for a newer version, at stage entries and upgrades —
        rather than told by a signal at publish, which would wake every customer at once."""
        self._decide_version_attribute()
        return await workflow.execute_local_activity(
            "prepare_journey",
            PrepareRequest(
                journey_id=self.input.journey_id,
                customer_id=self.input.customer_id,
                version=version,
                newer_than=newer_than,
                entered=entered,
                seed=seed,
                deflated=self.definition_deflated,
            ),
            result_type=PreparedJourney,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )

    async def _adopt_newer(self, check: CheckVersion) -> None:
        if self.every_entry_with_its_send:
            self.unrecorded_entries.append(check.entered)
            prepared = await self._prepare(newer_than=check.current)
        else:
            prepared = await self._prepare(newer_than=check.current, entered=check.entered)
        definition = prepared.definition()
        newest = compile_journey(definition) if definition else None
        self.machine.adopt(newest, prepared.version, self._now())

    async def _assign(self, assign: AssignArm) -> None:
        """The arm through a local activity that records it: a winner decided in the database
        reaches the workflow from history on replay, never from a read in workflow code."""
        self._decide_version_attribute()
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

    async def _record_entries(self) -> None:
        """The held stage entries, through prepare_journey, when no send follows to take them
        (its answer is not needed: the newest version was read in the same task)."""
        entries, self.unrecorded_entries = self.unrecorded_entries, []
        for entered in entries:
            await self._prepare(newer_than=self.state.version, entered=entered)

    async def _send(self, send: SendMessage) -> None:
        request = send.request
        if self.unrecorded_entries:
            request = request.model_copy(update={"entered": self.unrecorded_entries})
        try:
            run = (
                workflow.execute_local_activity
                if self._patched(SENDS_AS_LOCAL_ACTIVITIES)
                else workflow.execute_activity
            )
            outcome: SendOutcome = await run(
                "send_message",
                request,
                result_type=SendOutcome,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SEND_RETRY,
            )
        except ActivityError as error:
            # Retries ran out (the database stayed down for hours): this message is lost,
            # the journey is not, nor the stage entries it was to record.
            outcome = SendOutcome(
                message_id=0, status="failed", reason=f"send gave up: {error.cause or error}"
            )
            await self._record_entries()
        self.unrecorded_entries = []
        self.machine.sent(send, outcome, self._now())

    def _invalid_properties(self, event: JourneyEvent) -> list[str]:
        return invalid_properties(event)

    def _publish_entered(self) -> None:
        while self.machine.entered:
            self._publish_stage(self.machine.entered.pop(0))

    def _patched(self, patch_id: str) -> bool:
        """workflow.patched, but yes without a marker for the patches this run began with
        (PATCH_GENERATIONS), decided at the run's first patch, in its first task."""
        if self.patches_from_the_start is None:
            self.patches_from_the_start = self._began_with_patches()
        if patch_id.partition("@")[0] in self.patches_from_the_start:
            return True
        return workflow.patched(patch_id)

    def _began_with_patches(self) -> frozenset[str]:
        for marker, patches in reversed(PATCH_GENERATIONS):
            if workflow.patched(marker):
                return patches
        return frozenset()

    def _decide_version_attribute(self) -> None:
        """Called before every local activity (VERSION_ATTRIBUTE_DECIDED_FIRST says why)."""
        if not self.version_attribute_decided:
            self.version_attribute_decided = self._patched(
                at_point(VERSION_ATTRIBUTE_DECIDED_FIRST, self.state.stage_entries)
            )

    def _publish_stage(self, stage: str) -> None:
        attributes: list[SearchAttributeUpdate[Any]] = [
            CUSTOMER_ID.value_set(self.input.customer_id),
            JOURNEY_ID.value_set(self.input.journey_id),
            JOURNEY_STAGE.value_set(stage),
        ]
        if self.state.version is not None and (
            self.version_attribute_decided
            or self._patched(at_point(VERSION_SEARCH_ATTRIBUTE, self.state.stage_entries))
        ):
            attributes.append(JOURNEY_VERSION.value_set(self.state.version))
        workflow.upsert_search_attributes(attributes)
        workflow.set_current_details(f"{self.input.journey_id}: stage {stage}")
