"""Everything that crosses workflow history: inputs, state, activity requests and results.

Pydantic models with defaults on every added field, so running workflows keep decoding
when a field is added. No personal data: customers appear by id only.
"""

from __future__ import annotations

import base64
import zlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, assert_never

from pydantic import BaseModel, Field, model_validator

from definition.channels import Channel
from definition.metrics import Metrics
from definition.model import WinnerRule

RECENT_EVENTS = 20
RECENT_MESSAGES = 20
STAGE_HISTORY = 100
SUPPORT_ACTIONS = 50
SEEN_EVENT_IDS = 1000
"""Dedup window inside a workflow; the events table dedups for ever at ingestion."""


def workflow_id(journey_id: str, customer_id: str) -> str:
    return f"journey:{journey_id}:{customer_id}"


class JourneyEvent(BaseModel):
    event_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any] = {}


class EventRecord(BaseModel):
    event_id: str
    type: str
    at: datetime
    properties: dict[str, Any] = {}
    effect: str = ""
    """What the event did: 'entered new', 'resumed wait_for', 'duplicate', ..."""


class MessageRecord(BaseModel):
    at: datetime
    message_id: int
    stage: str
    step: str
    channel: str
    template: str
    status: str
    reason: str | None = None


class StageChange(BaseModel):
    at: datetime
    stage: str
    previous: str | None
    cause: str
    version: int | None = None
    """The journey version the customer runs in this stage (None: recorded before versions
    were kept here)."""
    adopted_from: int | None = None
    """The version the customer ran before, when they adopted `version` on entering."""


class SupportKind(StrEnum):
    """The support actions: each is an update of the workflow under this name."""

    PAUSE = "pause"
    RESUME = "resume"
    SKIP_WAIT = "skip_wait"
    MOVE_TO = "move_to"
    EXIT = "exit"
    UPGRADE = "upgrade"

    @property
    def label(self) -> str:
        """The support page's button."""
        match self:
            case SupportKind.PAUSE:
                return "Pause"
            case SupportKind.RESUME:
                return "Resume"
            case SupportKind.SKIP_WAIT:
                return "Skip the wait"
            case SupportKind.MOVE_TO:
                return "Move to stage"
            case SupportKind.EXIT:
                return "Exit journey"
            case SupportKind.UPGRADE:
                return "Upgrade to the newest version"
            case _:
                assert_never(self)

    @property
    def needs_stage(self) -> bool:
        return self is SupportKind.MOVE_TO


class SupportAction(BaseModel):
    """A support person's request: who, and why (both kept in the journey's record)."""

    by: str = Field(min_length=1, max_length=100)
    reason: str = Field(default="", max_length=500)
    stage: str | None = None
    """For `move_to`: the stage to enter."""


class SupportRecord(BaseModel):
    at: datetime
    action: str
    by: str
    reason: str = ""


class WaitingFor(BaseModel):
    """A running `wait_for`: its timeout is the state's timer."""

    event: str
    when: str | None


class Timer(BaseModel):
    """The flow's one wake-up: the end of a wait, a wait_for's timeout or of quiet hours."""

    at: datetime
    reason: str
    held_from: datetime | None = None
    """When quiet hours began holding a send (its timer only): the ledger keeps it, so a report
    can tell a message sent late from one sent on time."""


class JourneyFacts(BaseModel):
    """What support sees of the state as it is kept."""

    version: int | None = None
    stage: str | None = None
    previous_stage: str | None = None
    stage_entered_at: datetime | None = None
    messages: list[MessageRecord] = []
    recent_events: list[EventRecord] = []
    stage_history: list[StageChange] = []
    experiments: dict[str, str | None] = {}
    exited: str | None = None
    runs: int = 1
    paused: SupportRecord | None = None
    support_actions: list[SupportRecord] = []


class JourneyState(JourneyFacts):
    instance: str
    """Tells this enrolment apart from an earlier one under the same workflow id."""
    timezone: str | None = None
    stage_entries: int = 0
    stage_event: JourneyEvent | None = None
    pc: int = 0
    loop_counters: dict[str, int] = {}
    timer: Timer | None = None
    waiting_for: WaitingFor | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    last_event_at: dict[str, datetime] = {}
    seen_event_ids: list[str] = []
    counted_event_ids: list[str] = []
    """Events the starting seed counted that may still arrive by signal (MetricsSeed)."""

    @model_validator(mode="before")
    @classmethod
    def _one_timer(cls, data: Any) -> Any:
        # Runs that continued as new before the single timer carry `wake_at`/`wake_reason`
        # and a copy of the deadline in `waiting_for`: they keep waiting for the same instant.
        if not isinstance(data, dict) or "timer" in data:
            return data
        data = dict(data)
        at, reason = data.pop("wake_at", None), data.pop("wake_reason", None)
        waiting = data.get("waiting_for")
        if at is None and isinstance(waiting, dict) and waiting.get("deadline") is not None:
            at, reason = waiting["deadline"], f"waiting for {waiting.get('event')} until timeout"
        if at is not None:
            data["timer"] = {"at": at, "reason": reason or "wait"}
        return data


class JourneyInput(BaseModel):
    journey_id: str
    customer_id: str
    version: int | None = None
    """None: the newest published version, pinned for the life of this enrolment."""
    events_per_run: int = 500
    clock_offset: timedelta = timedelta(0)
    """Simulation only: the scenario's start minus the test server's clock."""
    state: JourneyState | None = None
    pending: list[JourneyEvent] = []


class JourneyView(JourneyFacts):
    """The `state` query: what support sees."""

    journey_id: str
    customer_id: str
    step: str | None
    """The step the flow is at, in the journey's words: `wait 2d before cross_sell`."""
    step_kind: str | None
    """Its kind as journey files write it: `send`, `wait`, `wait_for`, ..."""
    step_path: str | None = None
    """Where it is in the journey file: `new/2` is the third step of stage new's flow."""
    next_wake_at: datetime | None
    next_wake_reason: str | None
    metrics: dict[str, Any]


class JourneyResult(BaseModel):
    journey_id: str
    customer_id: str
    stage: str | None
    exited: str


class StageEntered(BaseModel):
    """A stage entry, for the stage_entries table (ids and stage names only)."""

    instance: str
    entry: int
    """JourneyState.stage_entries after the entry: 1 for the enrolment's first stage."""
    stage: str
    previous_stage: str | None
    version: int
    """The version the customer ran when the entry happened (before adopting a newer one)."""
    at: datetime


class SeedRequest(BaseModel):
    """A new enrolment asks for its starting metrics from the customer's recorded events."""

    at: datetime
    """Journey time of the start: the metrics are as of then."""
    handled_event_ids: list[str] = []
    """Events already in the workflow's inbox: it counts them itself."""


class MetricsSeed(BaseModel):
    metrics: Metrics = Field(default_factory=Metrics)
    recent_event_ids: list[str] = []
    """Counted events that occurred shortly before `at`: their signals may still be on the way
    (the router records an event before it delivers it), and must not be counted again."""


class PrepareRequest(BaseModel):
    journey_id: str
    customer_id: str
    version: int | None
    seed: SeedRequest | None = None
    newer_than: int | None = None
    """Asked at a stage entry or an upgrade: the newest version if it is newer than this one,
    else `version` back with no definition (nothing to adopt, nothing large in history)."""
    entered: StageEntered | None = None
    """At a stage entry: the entry, which the activity records."""
    deflated: bool = False
    """The definition comes back deflated (PreparedJourney.definition_deflated)."""


class ArmRequest(BaseModel):
    """A customer reached a split with no arm yet: record_assignment records and answers it."""

    journey_id: str
    customer_id: str
    instance: str
    split: str
    arms: list[str]
    winner: WinnerRule | None
    """The split's rule; its flows stay out of history."""
    window: timedelta
    """The split's conversion window (definition.model.split_window), for the winner rule."""
    hashed_arm: str | None
    """The sticky hash's arm (None: the holdout): the answer unless a winner was decided."""
    at: datetime
    """Journey time of the assignment: conversions are counted from it."""


class ArmAssigned(BaseModel):
    arm: str | None
    by_winner: bool = False


class PreparedJourney(BaseModel):
    version: int
    definition_json: str
    """Empty when a `newer_than` request found nothing newer, or when it is deflated."""
    timezone: str
    seed: MetricsSeed | None = None
    """The starting metrics, when the request asked for them."""
    definition_deflated: str = ""
    """The definition zlib-deflated, as base64 text, when the request asked for it: this answer
    is a marker in every run's history, which a cold worker reads back and replays, and the
    lifecycle journey's definition is 4.9 KB as JSON, 1.4 KB so."""

    @staticmethod
    def deflate(definition_json: str) -> str:
        return base64.b64encode(zlib.compress(definition_json.encode(), 9)).decode()

    def definition(self) -> str:
        """The definition as JSON, however it came; empty when there is none."""
        if self.definition_deflated:
            return zlib.decompress(base64.b64decode(self.definition_deflated)).decode()
        return self.definition_json


class SendRequest(BaseModel):
    idempotency_key: str
    customer_id: str
    journey_id: str
    journey_version: int
    stage: str
    step: str
    channel: Channel
    template: str
    transactional: bool
    url: str | None = None
    """Where a webhook goes (the journey's `url`); None for the other channels."""
    send_at: datetime
    """Journey time of the send: the frequency cap's 7 days end here."""
    held_since: datetime | None = None
    """When the send was due, if quiet hours held it until `send_at`."""
    metrics: dict[str, Any]
    event: dict[str, Any]
    entered: list[StageEntered] = []
    """Stage entries the send records with its claim (those the journey did not record through
    prepare_journey: RECORD_ENTRY_WITH_ITS_SEND)."""


class SendOutcome(BaseModel):
    message_id: int
    status: str
    reason: str | None = None
    timezone: str | None = None
    """The customer's time zone as the database has it now, for later quiet hours."""


def bounded(items: list[Any], size: int) -> list[Any]:
    return items[-size:]
