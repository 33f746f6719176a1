"""Drives the journey machine the way JourneyWorkflow does, on a clock the test moves.

Sends succeed at once unless the test says otherwise; nothing here needs a server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from definition.durations import parse_duration
from definition.model import Journey
from definition.program import CompiledJourney, compile_stage
from definition.schedule import zone
from workflows.interface import (
    ArmAssigned,
    ArmRequest,
    JourneyEvent,
    JourneyState,
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
    Effect,
    Machine,
    SendMessage,
    Sleep,
)

TURNS = 10_000
"""More turns than any test needs: a machine that spins fails the test instead of hanging it."""


LIFECYCLE = (Path(__file__).resolve().parents[2] / "journeys" / "lifecycle.yaml").read_text()


def compiled(source: str | dict[str, Any]) -> CompiledJourney:
    # BaseLoader keeps `on:` a key, not YAML 1.1's True; the model converts the strings it gets.
    loaded = yaml.load(source, Loader=yaml.BaseLoader) if isinstance(source, str) else source  # noqa: S506 - strings, lists and dicts only
    journey = Journey.model_validate(loaded)
    return CompiledJourney(journey, {name: compile_stage(journey, name) for name in journey.stages})


def one_stage(flow: list[Any], **fields: Any) -> dict[str, Any]:
    """A journey whose `signed_up` (or `purchase`) enters stage `one`, which runs `flow`."""
    return {
        "journey": "steps",
        "name": "Steps",
        "entry": [{"on": "signed_up", "to": "one"}, {"on": "purchase", "to": "one"}],
        "stages": {
            "one": {"flow": flow},
            "two": {"flow": [{"send": {"channel": "email", "template": "two"}}]},
        },
        **fields,
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Drive:
    """One customer in one journey: events in, messages out, time moved by the test."""

    def __init__(
        self,
        journey: str | dict[str, Any] | CompiledJourney,
        start: str = "2026-03-02T10:00:00+01:00",
        *,
        timezone: str = "Europe/Warsaw",
        state: JourneyState | None = None,
        events_per_run: int = 500,
        patched: Callable[[str], bool] = lambda patch_id: True,
        customer_id: str = "c-1",
    ) -> None:
        self.journey = journey if isinstance(journey, CompiledJourney) else compiled(journey)
        self.warnings: list[str] = []
        self.machine = Machine(
            state or JourneyState(instance="run1"),
            workflow_id=f"journey:{self.journey.definition.journey}:{customer_id}",
            journey_id=self.journey.definition.journey,
            customer_id=customer_id,
            events_per_run=events_per_run,
            patched=patched,
            warn=self.warnings.append,
        )
        self.now = at(start)
        self.published: dict[int, CompiledJourney] = {1: self.journey}
        self.entries: list[StageEntered] = []
        """Every stage entry the machine asked to record, oldest first."""
        """What `cyklo publish` froze so far, by version: the machine asks for the newest."""
        self.machine.load(self.journey, version=1, timezone=timezone)
        self.inbox: list[JourneyEvent] = []
        self.sent: list[tuple[datetime, str]] = []
        """(local time of the send, template) of every message that went out."""
        self.requests: list[SendMessage] = []
        self.outcome: Callable[[SendMessage], SendOutcome] = lambda send: SendOutcome(
            message_id=len(self.state.messages) + 1, status="sent"
        )
        self.assignments: list[ArmRequest] = []
        """Every arm the machine asked record_assignment for, oldest first."""
        self.assign: Callable[[ArmRequest], ArmAssigned] = lambda request: ArmAssigned(arm=request.hashed_arm)
        """What record_assignment answers: the hash's arm unless the test decides a winner."""
        self.effect: Effect = self.settle()

    @property
    def state(self) -> JourneyState:
        return self.machine.state

    def settle(self) -> Effect:
        """Turns until the machine waits for something that is not due yet."""
        for _ in range(TURNS):
            effect = self.machine.turn(self.inbox, self.now)
            match effect:
                case SendMessage():
                    self.requests.append(effect)
                    self.sent.append((self.local(self.now), effect.request.template))
                    self.machine.sent(effect, self.outcome(effect), self.now)
                case AssignArm(request=request):
                    self.assignments.append(request)
                    self.machine.assigned(effect, self.assign(request))
                case CheckVersion(current=current, entered=entered):
                    self.entries.append(entered)
                    self.machine.adopt(*self._newer_than(current), self.now)
                case Sleep(until=until) if until is not None and until <= self.now:
                    continue
                case Sleep() | Done() | ContinueAsNew():
                    self.effect = effect
                    return effect
        raise AssertionError("the machine never came to rest")

    def event(self, type: str, *, id: str | None = None, after: str | None = None, **properties: Any) -> str:
        """Deliver an event now (or `after` a period), settle, and say what it did."""
        if after is not None:
            self.wait(after)
        event_id = id or f"e-{len(self.state.seen_event_ids) + len(self.state.recent_events)}-{type}"
        self.inbox.append(
            JourneyEvent(event_id=event_id, type=type, occurred_at=self.now, properties=properties)
        )
        self.settle()
        return self.state.recent_events[-1].effect

    def wait(self, period: str) -> None:
        """Let `period` pass, waking at every timer on the way as the workflow would."""
        self.until(self.now + parse_duration(period))

    def until(self, moment: datetime) -> None:
        for _ in range(TURNS):
            effect = self.settle()
            if not isinstance(effect, Sleep) or effect.until is None or effect.until > moment:
                break
            self.now = effect.until
        self.now = max(self.now, moment)
        self.settle()

    def support(self, kind: SupportKind, by: str = "Ewa", **fields: Any) -> str | None:
        """Perform a support action as the update does: its refusal, or None and the action done."""
        action = SupportAction(by=by, **fields)
        refusal = self.machine.refusal(kind, action)
        if refusal is None and kind is SupportKind.UPGRADE:
            newest, version = self._newer_than(self.machine.state.version or 0)
            refusal = self.machine.upgrade_refusal(newest, version)
            if refusal is None:
                assert newest is not None
                self.machine.upgrade(newest, version, action, self.now)
                self.settle()
        elif refusal is None:
            self.machine.support(kind, action, self.now)
            self.settle()
        return refusal

    def publish(self, source: str | dict[str, Any]) -> int:
        """A new version of the journey, as `cyklo publish` would freeze it: its number."""
        version = max(self.published) + 1
        self.published[version] = compiled(source)
        return version

    def _newer_than(self, current: int) -> tuple[CompiledJourney | None, int]:
        """What prepare_journey answers a `newer_than` request."""
        newest = max(self.published)
        return (self.published[newest], newest) if newest > current else (None, current)

    def versions(self) -> list[int | None]:
        """The version of each stage entered, oldest first."""
        return [change.version for change in self.state.stage_history]

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(zone(self.state.timezone))

    def templates(self) -> list[str]:
        return [template for _, template in self.sent]

    def stages(self) -> list[str]:
        return [change.stage for change in self.state.stage_history]
