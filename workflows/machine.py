"""The journey machine: every state transition of a journey, as plain Python.

Given the state, the compiled journey and `now`, it handles events, fires due transitions,
advances the flow and performs support actions, and says what must happen next as an
`Effect`. It imports nothing of Temporal: JourneyWorkflow performs the effects (timers, the
send activity, search attributes, continue-as-new) and tests drive the machine directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

from definition.adoption import adopted_by_running_customers, stage_in
from definition.conditions import ConditionError, evaluate
from definition.durations import format_duration
from definition.events import EventType, Meaning, invalid_declared, meaning
from definition.model import REMOVED_STAGE_EXITS, Journey, Transition, split_window
from definition.program import (
    Branch,
    CompiledJourney,
    Exit,
    Instruction,
    Jump,
    LoopStart,
    Program,
    Send,
    Split,
    Wait,
    WaitFor,
    assign_arm,
    label,
)
from definition.schedule import advance, next_local_time, quiet_until
from workflows.interface import (
    RECENT_EVENTS,
    RECENT_MESSAGES,
    SEEN_EVENT_IDS,
    STAGE_HISTORY,
    SUPPORT_ACTIONS,
    ArmAssigned,
    ArmRequest,
    EventRecord,
    JourneyEvent,
    JourneyFacts,
    JourneyState,
    JourneyView,
    MessageRecord,
    MetricsSeed,
    SendOutcome,
    SendRequest,
    StageChange,
    StageEntered,
    SupportAction,
    SupportKind,
    SupportRecord,
    Timer,
    WaitingFor,
    bounded,
)

ADOPT_AT_STAGE_ENTRY = "adopt-newer-versions-at-stage-entry"
"""Patch: on entering a stage the journey asks for a newer published version (a local
activity) and adopts it when that version says `versioning: stage_boundary`."""

def at_point(patch_id: str, point: object) -> str:
    """The id under which one place of one run asks for a patch. Temporal remembers a patch's
    first answer for the rest of the run, so a run replayed from before the change would
    answer no at every later stage entry too, for years; asked per stage entry (or split),
    only the entries already in the history answer no, and the next live one takes the change."""
    return f"{patch_id}@{point}"


RECORD_EXPERIMENT_ASSIGNMENTS = "record-experiment-assignments"
"""Patch: a customer reaching a split without an arm asks record_assignment (a local
activity) for it, which records the assignment and may answer a decided winner; before, the
arm was the hash alone and nothing outside the workflow knew it."""

SEED_METRICS_FROM_HISTORY = "seed-metrics-from-history"
"""Patch: a new enrolment starts from metrics built from the customer's recorded events
(prepare_journey's `seed`), not from zero, so an imported or returning customer with orders
is never taken for a first-time buyer."""

SKIP_INVALID_EVENTS = "skip-invalid-events"
"""Patch: an event whose properties the workflow cannot use is recorded and skipped (before,
a wrong category failed the workflow task for good, and a missing amount counted as 0)."""


@dataclass(frozen=True)
class SendMessage:
    """Call the send activity with `request`, then hand the outcome to `Machine.sent`."""

    request: SendRequest
    stage_entries: int
    """The stage entry the send belongs to: a support action during the send may start another."""


@dataclass(frozen=True)
class Sleep:
    """Nothing to do until `until` (None: until an event or a support action)."""

    until: datetime | None
    reason: str | None


@dataclass(frozen=True)
class CheckVersion:
    """A stage was entered: record `entered` and ask for a version newer than `current`
    (prepare_journey with `newer_than`), then hand it to `Machine.adopt` before the stage's
    flow runs."""

    current: int
    entered: StageEntered


@dataclass(frozen=True)
class AssignArm:
    """A split without the customer's arm: call record_assignment with `request`, then hand
    its answer to `Machine.assigned` (the flow goes on from the split)."""

    request: ArmRequest


@dataclass(frozen=True)
class ContinueAsNew:
    """The run has seen enough events: start a new one with the state (`Machine.carried_state`)."""


@dataclass(frozen=True)
class Done:
    exited: str


Effect = SendMessage | AssignArm | Sleep | CheckVersion | ContinueAsNew | Done


def invalid_properties(event: JourneyEvent) -> list[str]:
    """What the machine could not use of this event, by name; the API refuses all of it,
    so this finds only events from before a rule existed, or a rule that slipped."""
    invalid = invalid_declared(event.type, event.properties)
    if event.occurred_at.utcoffset() is None:
        invalid.append("occurred_at")
    return invalid


def _new_run(patch_id: str) -> bool:
    return True  # a run that starts now takes every change


def _ignore(message: str) -> None:
    return None


class Machine:
    """One journey enrolment's state, moved on by events, time and support."""

    def __init__(
        self,
        state: JourneyState,
        *,
        workflow_id: str,
        journey_id: str,
        customer_id: str,
        events_per_run: int = 500,
        patched: Callable[[str], bool] = _new_run,
        warn: Callable[[str], None] = _ignore,
        check_event: Callable[[JourneyEvent], list[str]] = invalid_properties,
    ) -> None:
        """`patched` answers whether a change guarded by a patch id applies (the workflow passes
        `workflow.patched`; new runs say yes); `warn` takes what a marketer should see."""
        self.state = state
        self.journey: CompiledJourney | None = None
        self.workflow_id = workflow_id
        self.journey_id = journey_id
        self.customer_id = customer_id
        self.events_per_run = events_per_run
        self.patched = patched
        self.warn = warn
        self.check_event = check_event
        self.events_this_run = 0
        self.entered: list[str] = []
        """Stages entered since the workflow last published the stage, oldest first."""
        self.newer_version_wanted = False
        """A stage was entered: the flow waits for CheckVersion's answer before it runs."""

    def seed(self, seed: MetricsSeed) -> None:
        """A new enrolment's starting metrics, from the customer's recorded history."""
        state = self.state
        state.metrics = seed.metrics.model_copy(deep=True)
        state.counted_event_ids = list(seed.recent_event_ids)

    def load(self, journey: CompiledJourney, version: int, timezone: str) -> None:
        self.journey = journey
        self.state.version = version
        self.state.timezone = self.state.timezone or timezone

    # --- one turn of the workflow's loop --------------------------------------------------

    def turn(self, inbox: list[JourneyEvent], now: datetime, *, suggest_new_run: bool = False) -> Effect:
        """Take the inbox's events (removed from the list), then run until the flow must wait."""
        state = self.state
        if state.exited is not None:
            return Done(state.exited)
        # After each stage entry the rest waits for the version the customer runs from then on.
        if self._asks_for_newer_version():
            return self._check_version()
        while inbox:
            self.handle(inbox.pop(0), now)
            if self._asks_for_newer_version():
                return self._check_version()
        if state.paused is None:
            self.fire_due_transitions(now)
            if self._asks_for_newer_version():
                return self._check_version()
            send = self.advance(now)
            if send is not None:
                return send
        if state.exited is not None:
            return Done(state.exited)
        if self.events_this_run >= self.events_per_run or suggest_new_run:
            return ContinueAsNew()
        until, reason = self.next_wake(now)
        return Sleep(until, reason)

    def _asks_for_newer_version(self) -> bool:
        if not self.newer_version_wanted:
            return False
        self.newer_version_wanted = False
        # Histories recorded before versions were adopted never asked: they replay without.
        return self.patched(at_point(ADOPT_AT_STAGE_ENTRY, self.state.stage_entries))

    def _check_version(self) -> CheckVersion:
        state = self.state
        assert state.stage is not None and state.stage_entered_at is not None
        entered = StageEntered(
            instance=state.instance,
            entry=state.stage_entries,
            stage=state.stage,
            previous_stage=state.previous_stage,
            version=self._version,
            at=state.stage_entered_at,
        )
        return CheckVersion(self._version, entered)

    @property
    def _version(self) -> int:
        assert self.state.version is not None, "a version is loaded before any stage is entered"
        return self.state.version

    # --- versions -------------------------------------------------------------------------

    def adopt(self, newest: CompiledJourney | None, version: int, now: datetime) -> None:
        """CheckVersion's answer (None: nothing newer): the stage just entered runs on
        `newest` when it says `versioning: stage_boundary`, under the name it has there."""
        if newest is None or version <= self._version or not adopted_by_running_customers(newest.definition):
            return
        state = self.state
        assert state.stage is not None
        target = stage_in(newest.definition, state.stage)
        if target is None:
            self.warn(
                f"version {version} of {self.journey_id} has no stage {state.stage!r} and does not map it: "
                f"the customer stays on version {state.version}"
            )
            return
        previous, self.journey, state.version = state.version, newest, version
        entry = state.stage_history[-1]
        entry.version, entry.adopted_from = version, previous
        if target == REMOVED_STAGE_EXITS:
            state.exited = f"stage {state.stage} removed in version {version}"
            return
        if target != state.stage:
            entry.cause += f"; {state.stage} is {target} in version {version}"
            entry.stage = state.stage = target
        self.entered.append(target)  # the stage again, under the version it now runs

    def upgrade_refusal(self, newest: CompiledJourney | None, version: int) -> str | None:
        """Why support cannot move the customer to `newest` now, or None when it can."""
        state = self.state
        if state.exited is not None:
            return f"the journey has ended ({state.exited})"
        if newest is None or version <= self._version:
            return f"already on the newest version (v{state.version})"
        if state.stage is None:
            return "the customer has not entered a stage yet"
        if stage_in(newest.definition, state.stage) is None:
            return (
                f"version {version} has no stage {state.stage!r} and does not say where its customers go "
                "(renamed_stages or removed_stages): publish a version that does"
            )
        return None

    def upgrade(self, newest: CompiledJourney, version: int, action: SupportAction, now: datetime) -> None:
        """Support's upgrade, after `upgrade_refusal` allowed it: the customer goes on from the
        same step of their stage on `newest` (a wait keeps its end) when `newest` has that step
        unchanged; otherwise their stage (as `newest` names it) starts again, as a move_to."""
        state = self.state
        assert state.stage is not None
        target = stage_in(newest.definition, state.stage)
        assert target is not None
        self._record_support(SupportKind.UPGRADE, action, now, detail=f"to version {version}")
        here = self.current()
        previous, self.journey, state.version = state.version, newest, version
        cause = f"upgraded to version {version} by {action.by}"
        if target == REMOVED_STAGE_EXITS:
            state.exited = f"stage {state.stage} removed in version {version}, upgraded by {action.by}"
            return
        same_step = _same_step(here, newest.programs[target]) if target == state.stage else None
        if same_step is None:
            self._enter(target, cause, None, now)
        else:
            state.pc = same_step
            change = StageChange(at=now, stage=target, previous=state.previous_stage, cause=cause, version=version)
            state.stage_history = bounded([*state.stage_history, change], STAGE_HISTORY)
            self.entered.append(target)
        state.stage_history[-1].adopted_from = previous

    def carried_state(self) -> JourneyState:
        """The state the next run starts from."""
        return self.state.model_copy(update={"runs": self.state.runs + 1})

    # --- time -----------------------------------------------------------------------------

    def next_wake(self, now: datetime) -> tuple[datetime | None, str | None]:
        """The earliest of the flow's timer and the stage's period transitions."""
        if self.state.paused is not None:
            return None, f"paused by {self.state.paused.by}"
        candidates: list[tuple[datetime, str]] = []
        if self.state.timer is not None:
            candidates.append((self.state.timer.at, self.state.timer.reason))
        for due, transition in self._period_transitions():
            candidates.append((due, f"move to {transition.to} after {_period(transition)}"))
        if not candidates:
            return None, None
        return min(candidates, key=lambda candidate: candidate[0])

    def _period_transitions(self) -> list[tuple[datetime, Transition]]:
        state = self.state
        if self.journey is None or state.stage is None or state.stage_entered_at is None:
            return []
        found = []
        for transition in self.definition.stages[state.stage].transitions:
            if transition.after is None:
                continue
            since = state.stage_entered_at
            last = state.last_event_at.get(transition.without) if transition.without else None
            if last is not None and last > since:
                since = last
            found.append((advance(since, transition.after, state.timezone), transition))
        return found

    # --- events and transitions -----------------------------------------------------------

    def handle(self, event: JourneyEvent, now: datetime) -> None:
        state = self.state
        record = EventRecord(event_id=event.event_id, type=event.type, at=now, properties=event.properties)
        if event.event_id in state.seen_event_ids:
            record.effect = "duplicate, ignored"
            state.recent_events = bounded([*state.recent_events, record], RECENT_EVENTS)
            return
        self.events_this_run += 1
        state.seen_event_ids = bounded([*state.seen_event_ids, event.event_id], SEEN_EVENT_IDS)
        invalid = self.check_event(event)
        # Only a wrong event reaches the patch check, so histories of valid events replay
        # unchanged; one that an older worker handled the lenient way keeps that path on replay.
        if invalid and self.patched(SKIP_INVALID_EVENTS):
            record.properties = {}  # the values may be what is wrong: none is copied
            record.effect = f"skipped: invalid properties ({', '.join(invalid)})"
            state.recent_events = bounded([*state.recent_events, record], RECENT_EVENTS)
            return
        state.last_event_at[event.type] = now
        # An event the seed already counted (recorded just before the journey started, its
        # signal still on the way) moves the customer but is not counted twice.
        if event.event_id not in state.counted_event_ids:
            state.metrics.record(event.type, event.properties, event.occurred_at, now)
        record.effect = self._react(event, now)
        state.recent_events = bounded([*state.recent_events, record], RECENT_EVENTS)

    def _react(self, event: JourneyEvent, now: datetime) -> str:
        definition = self.definition
        state = self.state
        context = self._condition_context(event, now)
        if state.stage is None:
            for entry in definition.entry:
                if entry.trigger == event.type and self._holds(entry.when, context):
                    self._enter(entry.to, f"{event.type} ({event.event_id})", event, now)
                    return f"entered {entry.to}"
            if event.type == EventType.IMPORTED:
                # Nothing in the history fits an `imported` entry: the customer waits outside
                # the journey, and a later event may still start it.
                state.exited = "imported: no entry matched the customer's history"
            return "no entry rule matched"
        for transition in definition.stages[state.stage].transitions:
            if transition.on == event.type and self._holds(transition.when, context):
                self._enter(transition.to, f"{event.type} ({event.event_id})", event, now)
                return f"moved to {transition.to}"
        waiting = state.waiting_for
        if waiting is not None and waiting.event == event.type and self._holds(waiting.when, context):
            state.waiting_for = None
            state.timer = None
            state.pc += 1
            return "ended a wait_for"
        return "metrics updated" if meaning(event.type) is Meaning.ORDER else "recorded"

    def fire_due_transitions(self, now: datetime) -> None:
        for due, transition in sorted(self._period_transitions(), key=lambda found: found[0]):
            if due <= now:
                self._enter(transition.to, _period(transition), None, now)
                return

    def _enter(self, stage: str, cause: str, event: JourneyEvent | None, now: datetime) -> None:
        state = self.state
        state.previous_stage, state.stage = state.stage, stage
        state.stage_entered_at = now
        state.stage_entries += 1
        if event is not None:
            state.stage_event = event
        state.pc = 0
        state.loop_counters = {}
        state.timer = None
        state.waiting_for = None
        change = StageChange(
            at=now, stage=stage, previous=state.previous_stage, cause=cause, version=state.version
        )
        state.stage_history = bounded([*state.stage_history, change], STAGE_HISTORY)
        self.entered.append(stage)
        self.newer_version_wanted = True

    # --- the flow -------------------------------------------------------------------------

    @property
    def definition(self) -> Journey:
        assert self.journey is not None, "the definition is loaded before any event is handled"
        return self.journey.definition

    def program(self) -> Program:
        if self.journey is None or self.state.stage is None:
            return ()
        return self.journey.programs[self.state.stage]

    def current(self) -> Instruction | None:
        program = self.program()
        return program[self.state.pc] if self.state.pc < len(program) else None

    def advance(self, now: datetime) -> SendMessage | AssignArm | None:
        """Run the flow until it must wait (None), send, or learn a split's arm."""
        state = self.state
        program = self.program()
        while state.pc < len(program):
            instruction = program[state.pc]
            match instruction:
                case Send():
                    if state.timer is not None and now < state.timer.at:
                        return None
                    send = instruction.spec
                    quiet = self.definition.quiet_hours
                    exempt = send.transactional or not send.channel.reaches_customer
                    resume = None if exempt else quiet_until(now, state.timezone, quiet)
                    if resume is not None:
                        state.timer = Timer(
                            at=resume, reason=f"quiet hours: {send.template} waits", held_from=now
                        )
                        return None
                    return self._send(instruction, now)
                case Wait():
                    if state.timer is None:
                        state.timer = Timer(
                            at=self._wait_deadline(instruction, now), reason=f"wait ({instruction.path})"
                        )
                    if now < state.timer.at:
                        return None
                    state.timer = None
                    state.pc += 1
                case WaitFor():
                    wait_for = instruction.spec
                    if state.waiting_for is None:
                        state.waiting_for = WaitingFor(event=wait_for.event, when=wait_for.when)
                        state.timer = Timer(
                            at=advance(now, wait_for.timeout, state.timezone),
                            reason=f"waiting for {wait_for.event} until timeout",
                        )
                    if state.timer is not None and now < state.timer.at:
                        return None
                    state.waiting_for = None
                    state.timer = None
                    state.pc = instruction.timeout_target
                case Branch():
                    holds = self._holds(
                        instruction.condition, self._condition_context(state.stage_event, now)
                    )
                    state.pc = state.pc + 1 if holds else instruction.else_target
                case Split():
                    name = instruction.spec.name
                    if name not in state.experiments:
                        hashed = assign_arm(self.customer_id, self.journey_id, instruction.spec)
                        # Histories from before assignments were recorded keep the hash alone.
                        if self.patched(at_point(RECORD_EXPERIMENT_ASSIGNMENTS, name)):
                            return self._assign(instruction, hashed, now)
                        state.experiments[name] = hashed
                    arm = state.experiments[name]
                    names = [candidate.name for candidate in instruction.spec.arms]
                    state.pc = (
                        instruction.arm_targets[names.index(arm)] if arm in names else instruction.end_target
                    )
                case LoopStart():
                    count = state.loop_counters.get(instruction.path, 0)
                    if instruction.times is not None and count >= instruction.times:
                        state.loop_counters.pop(instruction.path, None)
                        state.pc = instruction.end_target
                    else:
                        state.loop_counters[instruction.path] = count + 1
                        state.pc += 1
                case Jump():
                    state.pc = instruction.target
                case Exit():
                    state.exited = instruction.reason
                    return None
                case _:
                    assert_never(instruction)
        return None

    def _assign(self, split: Split, hashed: str | None, now: datetime) -> AssignArm:
        spec = split.spec
        request = ArmRequest(
            journey_id=self.journey_id,
            customer_id=self.customer_id,
            instance=self.state.instance,
            split=spec.name,
            arms=[arm.name for arm in spec.arms],
            winner=spec.winner,
            window=split_window(self.definition, spec),
            hashed_arm=hashed,
            at=now,
        )
        return AssignArm(request)

    def assigned(self, assign: AssignArm, answer: ArmAssigned) -> None:
        """record_assignment's answer: the customer's arm of the split from now on (the flow
        takes it at the split, which the next turn runs again)."""
        self.state.experiments[assign.request.split] = answer.arm

    def _wait_deadline(self, wait: Wait, now: datetime) -> datetime:
        spec = wait.spec
        base = self.state.stage_entered_at if spec.since == "stage" and self.state.stage_entered_at else now
        deadline = advance(base, spec.duration, self.state.timezone) if spec.duration is not None else now
        if spec.until is not None:
            deadline = next_local_time(deadline, self.state.timezone, spec.until)
        return deadline

    def _send(self, send: Send, now: datetime) -> SendMessage:
        state = self.state
        assert state.stage is not None and state.version is not None
        iteration = "".join(f"#{state.loop_counters.get(loop, 0)}" for loop in send.loops)
        step = send.path + iteration
        request = SendRequest(
            idempotency_key=f"{self.workflow_id}/{state.instance}/{state.stage_entries}/{step}",
            customer_id=self.customer_id,
            journey_id=self.journey_id,
            journey_version=state.version,
            stage=state.stage,
            step=step,
            channel=send.spec.channel,
            template=send.spec.template,
            transactional=send.spec.transactional,
            url=send.spec.url,
            send_at=now,
            # Only the quiet hours' timer carries held_from.
            held_since=state.timer.held_from if state.timer is not None else None,
            metrics=state.metrics.view(now),
            event=event_context(state.stage_event),
        )
        return SendMessage(request=request, stage_entries=state.stage_entries)

    def sent(self, send: SendMessage, outcome: SendOutcome, now: datetime) -> None:
        """Record a send's outcome and move past it, unless support moved the customer meanwhile."""
        state = self.state
        if outcome.timezone:
            state.timezone = outcome.timezone
        request = send.request
        record = MessageRecord(
            at=now,
            message_id=outcome.message_id,
            stage=request.stage,
            step=request.step,
            channel=request.channel,
            template=request.template,
            status=outcome.status,
            reason=outcome.reason,
        )
        state.messages = bounded([*state.messages, record], RECENT_MESSAGES)
        if state.stage_entries == send.stage_entries:
            state.timer = None
            state.pc += 1

    # --- support actions ------------------------------------------------------------------

    def refusal(self, kind: SupportKind, action: SupportAction) -> str | None:
        """Why support may not do this now, or None when it may."""
        state = self.state
        if state.exited is not None:
            return f"the journey has ended ({state.exited})"
        if self.journey is None:
            return "the journey is starting: try again in a moment"
        match kind:
            case SupportKind.PAUSE:
                return f"already paused by {state.paused.by}" if state.paused is not None else None
            case SupportKind.RESUME:
                return "not paused" if state.paused is None else None
            case SupportKind.SKIP_WAIT:
                if state.timer is None:
                    return "the journey is not waiting: nothing to skip"
                if isinstance(self.current(), Send):
                    return (
                        "the next message waits for the end of quiet hours, a send rule that is not skipped"
                    )
                return None
            case SupportKind.MOVE_TO:
                stages = list(self.definition.stages)
                if action.stage not in stages:
                    return f"unknown stage {action.stage!r}: use one of {', '.join(stages)}"
                return None
            case SupportKind.EXIT:
                return None
            case SupportKind.UPGRADE:
                # Whether there is a newer version is known only once it is asked for:
                # `upgrade_refusal` says the rest.
                return "the customer has not entered a stage yet" if state.stage is None else None
            case _:
                assert_never(kind)

    def support(self, kind: SupportKind, action: SupportAction, now: datetime) -> None:
        """Perform an action `refusal` allowed."""
        state = self.state
        record = self._record_support(kind, action, now, detail=f"to {action.stage}" if action.stage else "")
        match kind:
            case SupportKind.PAUSE:
                state.paused = record
            case SupportKind.RESUME:
                state.paused = None
            case SupportKind.SKIP_WAIT:
                assert state.timer is not None
                state.timer = state.timer.model_copy(update={"at": now})
            case SupportKind.MOVE_TO:
                assert action.stage is not None
                self._enter(action.stage, f"moved by {action.by}", None, now)
            case SupportKind.EXIT:
                state.exited = f"exited by {action.by}" + (f": {action.reason}" if action.reason else "")
            case SupportKind.UPGRADE:
                raise ValueError("an upgrade needs the newest version: Machine.upgrade")
            case _:
                assert_never(kind)

    def _record_support(self, kind: SupportKind, action: SupportAction, now: datetime, detail: str) -> SupportRecord:
        reason = f"{action.reason} ({detail})" if detail else action.reason
        record = SupportRecord(at=now, action=kind.value, by=action.by, reason=reason)
        self.state.support_actions = bounded([*self.state.support_actions, record], SUPPORT_ACTIONS)
        return record

    # --- what support sees ----------------------------------------------------------------

    def view(self, now: datetime) -> JourneyView:
        state = self.state
        step = label(self.program(), state.pc)
        wake_at, wake_reason = self.next_wake(now)
        return JourneyView(
            **{name: getattr(state, name) for name in JourneyFacts.model_fields},
            journey_id=self.journey_id,
            customer_id=self.customer_id,
            step=step.text if step else None,
            step_kind=step.kind if step else None,
            step_path=step.path if step else None,
            next_wake_at=wake_at,
            next_wake_reason=wake_reason,
            metrics=state.metrics.view(now),
        )

    # --- conditions -----------------------------------------------------------------------

    def _condition_context(self, event: JourneyEvent | None, now: datetime) -> dict[str, Any]:
        return {
            "metrics": self.state.metrics.view(now),
            "event": event_context(event),
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
            self.warn(str(error))
            return False


def _same_step(here: Instruction | None, program: Program) -> int | None:
    """Where `here` (a step of the old version) is in `program`: the same step — same kind,
    same place in the journey file, same settings — if there is one."""
    if here is None or isinstance(here, Jump):
        return None
    return next((index for index, step in enumerate(program) if _step_identity(step) == _step_identity(here)), None)


def _step_identity(step: Instruction) -> tuple[object, ...]:
    # Jump targets are left out: an added step elsewhere moves them, not the step.
    match step:
        case Send() | Wait() | WaitFor() | Split():
            return (type(step), step.path, step.spec)
        case Branch():
            return (type(step), step.path, step.condition)
        case LoopStart():
            return (type(step), step.path, step.times)
        case Exit():
            return (type(step), step.path, step.reason)
        case Jump():
            return (type(step),)
        case _:
            assert_never(step)


def event_context(event: JourneyEvent | None) -> dict[str, Any]:
    """What conditions and templates see as `event`: never personal data (the router refuses it)."""
    if event is None:
        return {"type": "", "properties": {}}
    return {"type": event.type, "properties": event.properties}


def _period(transition: Transition) -> str:
    after = format_duration(transition.after) if transition.after is not None else ""
    return after + (f" without {transition.without}" if transition.without else "")
