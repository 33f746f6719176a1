"""The journey workflow: one per (customer, journey), interpreting the journey definition.

Deterministic: no I/O (the definition arrives through a local activity, so replays read
it from history), no clock but workflow.now(), no randomness at all (split arms are a
hash of the customer id, so they are sticky).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

with workflow.unsafe.imports_passed_through():
    from definition.conditions import ConditionError, evaluate
    from definition.durations import format_duration
    from definition.events import Meaning, invalid_declared, meaning
    from definition.model import Journey
    from definition.program import (
        Branch,
        CompiledJourney,
        Exit,
        Jump,
        LoopStart,
        Send,
        Split,
        Wait,
        WaitFor,
        assign_arm,
        compile_journey,
    )
    from definition.schedule import advance, next_local_time, quiet_until
    from workflows.interface import (
        RECENT_EVENTS,
        RECENT_MESSAGES,
        SEEN_EVENT_IDS,
        STAGE_HISTORY,
        SUPPORT_ACTIONS,
        EventRecord,
        JourneyEvent,
        JourneyInput,
        JourneyResult,
        JourneyState,
        JourneyView,
        MessageRecord,
        PreparedJourney,
        PrepareRequest,
        SendOutcome,
        SendRequest,
        StageChange,
        SupportAction,
        SupportRecord,
        WaitingFor,
        bounded,
    )
    from workflows.retries import SEND_RETRY

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY_ID = SearchAttributeKey.for_keyword("JourneyId")
JOURNEY_STAGE = SearchAttributeKey.for_keyword("JourneyStage")
SEARCH_ATTRIBUTES = (CUSTOMER_ID, JOURNEY_ID, JOURNEY_STAGE)

PASSTHROUGH_MODULES = ("definition", "jinja2", "markupsafe", "pydantic", "pydantic_core", "yaml", "zoneinfo")
"""Pure libraries the workflow uses, loaded once outside the sandbox: Jinja2 imports parts
of itself lazily and guards its caches with locks, which the sandbox would refuse."""


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox for JourneyWorkflow: every worker and replayer must use this one."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


SKIP_INVALID_EVENTS = "skip-invalid-events"
"""Patch: an event whose properties the workflow cannot use is recorded and skipped (before,
a wrong category failed the workflow task for good, and a missing amount counted as 0)."""

@workflow.defn(name="Journey")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        # Set up here, not in run(), so the signal that starts the workflow
        # (signal-with-start) finds the inbox ready.
        self.input = input
        self.state = input.state or JourneyState(instance="")
        self.inbox: list[JourneyEvent] = list(input.pending)
        self.journey: CompiledJourney | None = None
        self.events_this_run = 0
        self.support_changed = False

    @workflow.signal(name="event")
    def event(self, event: JourneyEvent) -> None:
        # Kept tiny: the main loop does the work, in arrival order, between awaits.
        self.inbox.append(event)

    @workflow.query(name="state")
    def view(self) -> JourneyView:
        state = self.state
        step = self._current_step()
        return JourneyView(
            journey_id=self.input.journey_id,
            customer_id=self.input.customer_id,
            version=state.version,
            stage=state.stage,
            previous_stage=state.previous_stage,
            stage_entered_at=state.stage_entered_at,
            step=getattr(step, "path", None),
            step_kind=type(step).__name__.lower() if step is not None else None,
            next_wake_at=self._next_wake()[0],
            next_wake_reason=self._next_wake()[1],
            metrics=state.metrics.view(self._now()),
            messages=state.messages,
            recent_events=state.recent_events,
            stage_history=state.stage_history,
            experiments=state.experiments,
            exited=state.exited,
            runs=state.runs,
            paused=state.paused,
            support_actions=state.support_actions,
        )

    # --- support actions: updates whose validators refuse with a reason -----------------

    @workflow.update(name="pause")
    def pause(self, action: SupportAction) -> JourneyView:
        self.state.paused = self._record("pause", action)
        return self.view()

    @pause.validator
    def _can_pause(self, action: SupportAction) -> None:
        self._refuse_if_ended()
        if self.state.paused is not None:
            raise ApplicationError(f"already paused by {self.state.paused.by}")

    @workflow.update(name="resume")
    def resume(self, action: SupportAction) -> JourneyView:
        self._record("resume", action)
        self.state.paused = None
        return self.view()

    @resume.validator
    def _can_resume(self, action: SupportAction) -> None:
        self._refuse_if_ended()
        if self.state.paused is None:
            raise ApplicationError("not paused")

    @workflow.update(name="skip_wait")
    def skip_wait(self, action: SupportAction) -> JourneyView:
        self._record("skip_wait", action)
        self.state.wake_at = self._now()
        if self.state.waiting_for is not None:
            self.state.waiting_for.deadline = self._now()
        return self.view()

    @skip_wait.validator
    def _can_skip_wait(self, action: SupportAction) -> None:
        self._refuse_if_ended()
        if self.state.wake_at is None:
            raise ApplicationError("the journey is not waiting: nothing to skip")
        if isinstance(self._current_step(), Send):
            raise ApplicationError(
                "the next message waits for the end of quiet hours, a send rule that is not skipped"
            )

    @workflow.update(name="move_to")
    def move_to(self, action: SupportAction) -> JourneyView:
        assert action.stage is not None
        self._record("move_to", action)
        self._enter(action.stage, f"moved by {action.by}", None)
        return self.view()

    @move_to.validator
    def _can_move_to(self, action: SupportAction) -> None:
        self._refuse_if_ended()
        stages = list(self._definition().stages) if self.journey else []
        if action.stage not in stages:
            raise ApplicationError(f"unknown stage {action.stage!r}: use one of {', '.join(stages)}")

    @workflow.update(name="exit")
    def exit(self, action: SupportAction) -> JourneyView:
        self._record("exit", action)
        self.state.exited = f"exited by {action.by}" + (f": {action.reason}" if action.reason else "")
        return self.view()

    @exit.validator
    def _can_exit(self, action: SupportAction) -> None:
        self._refuse_if_ended()

    def _refuse_if_ended(self) -> None:
        if self.state.exited is not None:
            raise ApplicationError(f"the journey has ended ({self.state.exited})")
        if self.journey is None:
            raise ApplicationError("the journey is starting: try again in a moment")

    def _record(self, name: str, action: SupportAction) -> SupportRecord:
        detail = f"{action.reason} (to {action.stage})" if action.stage else action.reason
        record = SupportRecord(at=self._now(), action=name, by=action.by, reason=detail)
        self.state.support_actions = bounded([*self.state.support_actions, record], SUPPORT_ACTIONS)
        # Wake the main loop: a resumed, skipped or moved journey has work to do now.
        self.support_changed = True
        return record

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        if not self.state.instance:
            self.state.instance = str(workflow.uuid4())[:8]
        prepared: PreparedJourney = await workflow.execute_local_activity(
            "prepare_journey",
            PrepareRequest(
                journey_id=input.journey_id,
                customer_id=input.customer_id,
                version=self.state.version or input.version,
            ),
            result_type=PreparedJourney,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )
        self.journey = compile_journey(prepared.definition_json)
        self.state.version = prepared.version
        self.state.timezone = self.state.timezone or prepared.timezone
        if self.state.stage is not None:
            self._publish_stage()

        while self.state.exited is None:
            self.support_changed = False
            self._handle_inbox()
            if self.state.paused is None:
                self._fire_due_transitions()
                if await self._advance():
                    continue
            if self.state.exited is not None:
                break
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    JourneyInput(
                        journey_id=input.journey_id,
                        customer_id=input.customer_id,
                        version=self.state.version,
                        events_per_run=input.events_per_run,
                        clock_offset=input.clock_offset,
                        state=self.state.model_copy(update={"runs": self.state.runs + 1}),
                        pending=self.inbox,
                    )
                )
            wake_at, _ = self._next_wake()
            timeout = (wake_at - self._now()) if wake_at is not None else None
            if timeout is not None and timeout <= timedelta(0):
                continue
            try:
                await workflow.wait_condition(
                    lambda: bool(self.inbox) or self.support_changed, timeout=timeout
                )
            except TimeoutError:
                pass  # the wake-up time came: the loop handles whatever is due

        await workflow.wait_condition(workflow.all_handlers_finished)
        return JourneyResult(
            journey_id=input.journey_id,
            customer_id=input.customer_id,
            stage=self.state.stage,
            exited=self.state.exited or "completed",
        )

    # --- time -------------------------------------------------------------------------

    def _now(self) -> datetime:
        return workflow.now() + self.input.clock_offset

    def _next_wake(self) -> tuple[datetime | None, str | None]:
        """The earliest of the flow's own wake-up and the stage's period transitions."""
        if self.state.paused is not None:
            return None, f"paused by {self.state.paused.by}"
        candidates: list[tuple[datetime, str]] = []
        if self.state.wake_at is not None:
            candidates.append((self.state.wake_at, self.state.wake_reason or "wait"))
        for due, transition in self._period_transitions():
            what = f" without {transition.without}" if transition.without else ""
            candidates.append((due, f"move to {transition.to} after {_duration(transition.after)}{what}"))
        if not candidates:
            return None, None
        return min(candidates, key=lambda candidate: candidate[0])

    def _period_transitions(self) -> list[tuple[datetime, Any]]:
        state = self.state
        if self.journey is None or state.stage is None or state.stage_entered_at is None:
            return []
        found = []
        for transition in self._definition().stages[state.stage].transitions:
            if transition.after is None:
                continue
            since = state.stage_entered_at
            last = state.last_event_at.get(transition.without) if transition.without else None
            if last is not None and last > since:
                since = last
            found.append((advance(since, transition.after, state.timezone), transition))
        return found

    # --- events and transitions ---------------------------------------------------------

    def _handle_inbox(self) -> None:
        while self.inbox:
            self._handle(self.inbox.pop(0))

    def _handle(self, event: JourneyEvent) -> None:
        state = self.state
        record = EventRecord(
            event_id=event.event_id, type=event.type, at=self._now(), properties=event.properties
        )
        if event.event_id in state.seen_event_ids:
            record.effect = "duplicate, ignored"
            state.recent_events = bounded([*state.recent_events, record], RECENT_EVENTS)
            return
        self.events_this_run += 1
        state.seen_event_ids = bounded([*state.seen_event_ids, event.event_id], SEEN_EVENT_IDS)
        invalid = self._invalid_properties(event)
        # Only a wrong event reaches the patch check, so histories of valid events replay
        # unchanged; one that an older worker handled the lenient way keeps that path on replay.
        if invalid and workflow.patched(SKIP_INVALID_EVENTS):
            record.properties = {}  # the values may be what is wrong: none is copied
            record.effect = f"skipped: invalid properties ({', '.join(invalid)})"
            state.recent_events = bounded([*state.recent_events, record], RECENT_EVENTS)
            return
        state.last_event_at[event.type] = self._now()
        state.metrics.record(event.type, event.properties, event.occurred_at, self._now())
        record.effect = self._react(event)
        state.recent_events = bounded([*state.recent_events, record], RECENT_EVENTS)

    def _invalid_properties(self, event: JourneyEvent) -> list[str]:
        """What the workflow could not use of this event, by name; the API refuses all of it,
        so this finds only events from before a rule existed, or a rule that slipped."""
        invalid = invalid_declared(event.type, event.properties)
        if event.occurred_at.utcoffset() is None:
            invalid.append("occurred_at")
        return invalid

    def _react(self, event: JourneyEvent) -> str:
        definition = self._definition()
        state = self.state
        context = self._condition_context(event)
        if state.stage is None:
            for entry in definition.entry:
                if entry.on == event.type and self._holds(entry.when, context):
                    self._enter(entry.to, f"{event.type} ({event.event_id})", event)
                    return f"entered {entry.to}"
            return "no entry rule matched"
        for transition in definition.stages[state.stage].transitions:
            if transition.on == event.type and self._holds(transition.when, context):
                self._enter(transition.to, f"{event.type} ({event.event_id})", event)
                return f"moved to {transition.to}"
        waiting = state.waiting_for
        if waiting is not None and waiting.event == event.type and self._holds(waiting.when, context):
            state.waiting_for = None
            state.wake_at = state.wake_reason = None
            state.pc += 1
            return "ended a wait_for"
        return "metrics updated" if meaning(event.type) is Meaning.ORDER else "recorded"

    def _fire_due_transitions(self) -> None:
        now = self._now()
        for due, transition in sorted(self._period_transitions(), key=lambda found: found[0]):
            if due <= now:
                what = f" without {transition.without}" if transition.without else ""
                self._enter(transition.to, f"{_duration(transition.after)}{what}", None)
                return

    def _enter(self, stage: str, cause: str, event: JourneyEvent | None) -> None:
        state = self.state
        now = self._now()
        state.previous_stage, state.stage = state.stage, stage
        state.stage_entered_at = now
        state.stage_entries += 1
        if event is not None:
            state.stage_event = event
        state.pc = 0
        state.loop_counters = {}
        state.wake_at = state.wake_reason = None
        state.waiting_for = None
        state.stage_history = bounded(
            [
                *state.stage_history,
                StageChange(at=now, stage=stage, previous=state.previous_stage, cause=cause),
            ],
            STAGE_HISTORY,
        )
        self._publish_stage()

    def _publish_stage(self) -> None:
        workflow.upsert_search_attributes(
            [
                CUSTOMER_ID.value_set(self.input.customer_id),
                JOURNEY_ID.value_set(self.input.journey_id),
                JOURNEY_STAGE.value_set(self.state.stage or ""),
            ]
        )
        workflow.set_current_details(f"{self.input.journey_id}: stage {self.state.stage}")

    # --- the flow interpreter -----------------------------------------------------------

    def _program(self) -> tuple[Any, ...]:
        if self.journey is None or self.state.stage is None:
            return ()
        return self.journey.programs[self.state.stage]

    def _definition(self) -> Journey:
        assert self.journey is not None, "the definition is loaded before any event is handled"
        return self.journey.definition

    def _current_step(self) -> Any:
        program = self._program()
        return program[self.state.pc] if self.state.pc < len(program) else None

    async def _advance(self) -> bool:
        """Run the flow until it must wait. True if it did something that may let events in."""
        state = self.state
        program = self._program()
        while state.pc < len(program):
            instruction = program[state.pc]
            now = self._now()
            if isinstance(instruction, Send):
                if state.wake_at is not None and now < state.wake_at:
                    return False
                resume = (
                    None
                    if instruction.spec.transactional or not instruction.spec.channel.reaches_customer
                    else quiet_until(now, state.timezone, self._definition().quiet_hours)
                )
                if resume is not None:
                    state.wake_at, state.wake_reason = (
                        resume,
                        f"quiet hours: {instruction.spec.template} waits",
                    )
                    return False
                entries = state.stage_entries
                await self._send(instruction)
                # A support action may have moved the customer while the send ran.
                if state.stage_entries == entries:
                    state.wake_at = state.wake_reason = None
                    state.pc += 1
                return True
            if isinstance(instruction, Wait):
                if state.wake_at is None:
                    state.wake_at = self._wait_deadline(instruction, now)
                    state.wake_reason = f"wait ({instruction.path})"
                if now < state.wake_at:
                    return False
                state.wake_at = state.wake_reason = None
                state.pc += 1
            elif isinstance(instruction, WaitFor):
                if state.waiting_for is None:
                    deadline = advance(now, instruction.spec.timeout, state.timezone)
                    state.waiting_for = WaitingFor(
                        event=instruction.spec.event, when=instruction.spec.when, deadline=deadline
                    )
                    state.wake_at = deadline
                    state.wake_reason = f"waiting for {instruction.spec.event} until timeout"
                if now < state.waiting_for.deadline:
                    return False
                state.waiting_for = None
                state.wake_at = state.wake_reason = None
                state.pc = instruction.timeout_target
            elif isinstance(instruction, Branch):
                holds = self._holds(instruction.condition, self._condition_context(state.stage_event))
                state.pc = state.pc + 1 if holds else instruction.else_target
            elif isinstance(instruction, Split):
                arm = state.experiments.get(instruction.spec.name)
                if instruction.spec.name not in state.experiments:
                    arm = assign_arm(self.input.customer_id, self.input.journey_id, instruction.spec)
                    state.experiments[instruction.spec.name] = arm
                names = [candidate.name for candidate in instruction.spec.arms]
                state.pc = (
                    instruction.arm_targets[names.index(arm)] if arm in names else instruction.end_target
                )
            elif isinstance(instruction, LoopStart):
                count = state.loop_counters.get(instruction.path, 0)
                if instruction.times is not None and count >= instruction.times:
                    state.loop_counters.pop(instruction.path, None)
                    state.pc = instruction.end_target
                else:
                    state.loop_counters[instruction.path] = count + 1
                    state.pc += 1
            elif isinstance(instruction, Jump):
                state.pc = instruction.target
            elif isinstance(instruction, Exit):
                state.exited = instruction.reason
                return False
        return False

    def _wait_deadline(self, wait: Wait, now: datetime) -> datetime:
        spec = wait.spec
        base = self.state.stage_entered_at if spec.since == "stage" and self.state.stage_entered_at else now
        deadline = advance(base, spec.duration, self.state.timezone) if spec.duration is not None else now
        if spec.until is not None:
            deadline = next_local_time(deadline, self.state.timezone, spec.until)
        return deadline

    async def _send(self, send: Send) -> None:
        state = self.state
        assert state.stage is not None and state.version is not None
        iteration = "".join(f"#{state.loop_counters.get(loop, 0)}" for loop in send.loops)
        step = send.path + iteration
        request = SendRequest(
            idempotency_key=f"{workflow.info().workflow_id}/{state.instance}/{state.stage_entries}/{step}",
            customer_id=self.input.customer_id,
            journey_id=self.input.journey_id,
            journey_version=state.version,
            stage=state.stage,
            step=step,
            channel=send.spec.channel,
            template=send.spec.template,
            transactional=send.spec.transactional,
            url=send.spec.url,
            send_at=self._now(),
            metrics=state.metrics.view(self._now()),
            event=_event_context(state.stage_event),
        )
        try:
            outcome: SendOutcome = await workflow.execute_activity(
                "send_message",
                request,
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
        if outcome.timezone:
            state.timezone = outcome.timezone
        record = MessageRecord(
            at=self._now(),
            message_id=outcome.message_id,
            stage=state.stage,
            step=step,
            channel=send.spec.channel,
            template=send.spec.template,
            status=outcome.status,
            reason=outcome.reason,
        )
        state.messages = bounded([*state.messages, record], RECENT_MESSAGES)

    # --- conditions ---------------------------------------------------------------------

    def _condition_context(self, event: JourneyEvent | None) -> dict[str, Any]:
        return {
            "metrics": self.state.metrics.view(self._now()),
            "event": _event_context(event),
            "stage": self.state.stage,
            "previous_stage": self.state.previous_stage,
            "experiments": self.state.experiments,
        }

    def _holds(self, condition: str | None, context: dict[str, Any]) -> bool:
        if condition is None:
            return True
        try:
            return evaluate(condition, context)
        except ConditionError as error:
            # A broken condition is the marketer's bug, not the customer's: treat it as
            # false and leave a trace support can find, instead of failing the workflow.
            workflow.logger.warning("%s", error)
            return False

    def _should_continue_as_new(self) -> bool:
        return (
            self.events_this_run >= self.input.events_per_run
            or workflow.info().is_continue_as_new_suggested()
        )


def _event_context(event: JourneyEvent | None) -> dict[str, Any]:
    """What conditions and templates see as `event`: never personal data (the router refuses it)."""
    if event is None:
        return {"type": "", "properties": {}}
    return {"type": event.type, "properties": event.properties}


def _duration(delta: timedelta | None) -> str:
    return format_duration(delta) if delta is not None else ""
