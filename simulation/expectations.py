"""What a scenario expects of its simulation (`expect:`), and which of it did not happen.

`unmet` is pure: given the expectations and the simulated timeline, one line per
expectation that did not hold, saying what happened instead. `cyklo test` prints them.

Which journey an expectation is about: a message names its own `journey` or matches any
journey's; `not_sent` and `count` look at every journey's messages (template names say
which journey they belong to); `stages` and `final_stage` follow `expect.journey`, or the
only journey the customer entered — with several, the scenario has to name one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator

from definition.channels import Channel
from definition.model import Journey, SendStep, iter_steps
from definition.problems import suggest
from definition.statuses import MessageStatus
from definition.templates import TEMPLATE_ERROR
from definition.yaml_source import compose_yaml, line_of

if TYPE_CHECKING:
    # Only for types: the runner imports the scenario, which holds these expectations.
    from simulation.runner import TimelineEntry

_NAME = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpectedMessage(_Strict):
    template: str = Field(pattern=_NAME)
    channel: Channel | None = None
    status: MessageStatus | None = None
    at: str | None = None
    """A prefix of the message's time in the customer's zone, ISO 8601: `2026-03-03T09:00`."""
    journey: str | None = Field(default=None, pattern=_NAME)

    @field_validator("at", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        # Unquoted, YAML reads `2026-03-03` as a date and `2026-03-03 09:00:00` as a datetime.
        if isinstance(value, datetime):
            return value.isoformat(timespec="seconds")
        if isinstance(value, date):
            return value.isoformat()
        return value

    def __str__(self) -> str:
        wanted = [str(part) for part in (self.channel, self.status) if part]
        if self.at:
            wanted.append(f"at {self.at}")
        if self.journey:
            wanted.append(f"in {self.journey}")
        return f"message {self.template}" + (f" ({', '.join(wanted)})" if wanted else "")

    def matches(self, entry: TimelineEntry) -> bool:
        return (
            entry.template == self.template
            and (self.channel is None or entry.channel == self.channel)
            and (self.status is None or entry.status == self.status)
            and (self.at is None or entry.at.isoformat().startswith(self.at))
            and (self.journey is None or entry.journey == self.journey)
        )


class Expectations(_Strict):
    journey: str | None = Field(default=None, pattern=_NAME)
    """The journey `stages` and `final_stage` follow; default: the only one the customer entered."""
    messages: list[ExpectedMessage] = []
    """Each must be among the customer's messages (others may be there too)."""
    not_sent: list[str] = []
    """Templates of which no message reached the provider (suppressed or capped ones may exist)."""
    stages: list[str] = []
    """Entered in this order; other stages may come between."""
    final_stage: str | None = None
    count: dict[str, NonNegativeInt] = {}
    """Template → how many of its messages reached the provider."""


def unmet(expectations: Expectations, timeline: Sequence[TimelineEntry]) -> list[str]:
    """One line per expectation the timeline does not meet, with what happened instead."""
    messages = [entry for entry in timeline if entry.kind == "message"]
    problems = [
        f"{wanted}: not found; {_seen(messages, wanted.template)}"
        for wanted in expectations.messages
        if not any(wanted.matches(entry) for entry in messages)
    ]
    for template in expectations.not_sent:
        went_out = [entry for entry in _sent(messages) if entry.template == template]
        if went_out:
            problems.append(f"not_sent {template}: {_list(went_out)}")
    for template, expected in expectations.count.items():
        went_out = [entry for entry in _sent(messages) if entry.template == template]
        if len(went_out) != expected:
            problems.append(
                f"count {template}: expected {expected}, sent {len(went_out)}"
                + (f" ({_list(went_out)})" if went_out else "")
            )
    if expectations.stages or expectations.final_stage:
        problems.extend(_stage_problems(expectations, timeline))
    return problems


def template_failures(timeline: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    """Messages that failed to render. A journey that validates can still fail on data (an
    event property a template needs and the event lacks): no simulation run in CI may pass
    over it, whatever it expects."""
    return [
        entry
        for entry in timeline
        if entry.kind == "message"
        and entry.status == MessageStatus.FAILED
        and (entry.detail or "").startswith(TEMPLATE_ERROR)
    ]


def _stage_problems(expectations: Expectations, timeline: Sequence[TimelineEntry]) -> list[str]:
    what = "stages" if expectations.stages else "final_stage"
    entered = sorted({entry.journey for entry in timeline if entry.kind == "stage"})
    journey = expectations.journey
    if journey is None:
        if not entered:
            return [f"{what}: the customer entered no journey"]
        if len(entered) > 1:
            both = " and ".join(entered)
            return [f"{what}: the customer entered {both}; say which journey with `expect.journey`"]
        journey = entered[0]
    seen = [entry.stage or "" for entry in timeline if entry.kind == "stage" and entry.journey == journey]
    if not seen:
        return [f"{what}: the customer never entered {journey} (entered: {', '.join(entered) or 'none'})"]
    path = " → ".join(seen)
    problems = []
    rest = iter(seen)
    previous: str | None = None
    for stage in expectations.stages:
        # `in` on an iterator consumes it up to the match: the stages in order, gaps allowed.
        if stage not in rest:
            after = f" after {previous}" if previous else ""
            problems.append(f"stages: expected {stage}{after}; saw {path}")
            break
        previous = stage
    if expectations.final_stage and seen[-1] != expectations.final_stage:
        problems.append(f"final_stage: expected {expectations.final_stage}; ended in {seen[-1]} ({path})")
    return problems


def _sent(messages: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    return [entry for entry in messages if entry.status and MessageStatus(entry.status).reached_provider]


def _seen(messages: Sequence[TimelineEntry], template: str) -> str:
    same = [entry for entry in messages if entry.template == template]
    return f"saw {template} {_list(same)}" if same else f"no {template} message at all"


def _list(entries: Iterable[TimelineEntry]) -> str:
    return ", ".join(
        f"{entry.channel} {entry.status} at {entry.at.strftime('%Y-%m-%dT%H:%M')}" for entry in entries
    )


def name_problems(path: Path, expectations: Expectations, journeys: Sequence[Journey]) -> list[str]:
    """`file:line:` for every journey, stage, template or channel the expectations name that
    the journeys do not have: a typo must fail the test, not pass it (`not_sent: [welcom]`)."""
    by_name = {journey.journey: journey for journey in journeys}
    problems: list[tuple[tuple[Any, ...], str]] = []

    def known_journey(where: tuple[Any, ...], name: str | None) -> list[Journey]:
        if name is None:
            return list(journeys)
        if name not in by_name:
            problems.append((where, f"no journey {name!r}{suggest(name, by_name)}"))
            return []
        return [by_name[name]]

    def known_template(where: tuple[Any, ...], template: str, among: list[Journey]) -> None:
        sent = {name for name, _ in _sends(among)}
        if among and template not in sent:
            who = f"{among[0].journey} sends no" if len(among) == 1 else "no journey sends"
            problems.append((where, f"{who} {template!r}{suggest(template, sent)}"))

    # With a journey misnamed, its stages are still checked against every journey's.
    default = known_journey(("expect", "journey"), expectations.journey) or list(journeys)
    for index, message in enumerate(expectations.messages):
        where = ("expect", "messages", index)
        among = known_journey((*where, "journey"), message.journey)
        known_template((*where, "template"), message.template, among)
        channels = {channel for name, channel in _sends(among) if name == message.template}
        if among and channels and message.channel and message.channel not in channels:
            sent_by = ", ".join(sorted(channels))
            problems.append(((*where, "channel"), f"{message.template!r} is sent by {sent_by} only"))
    for index, template in enumerate(expectations.not_sent):
        known_template(("expect", "not_sent", index), template, list(journeys))
    for template in expectations.count:
        known_template(("expect", "count", template), template, list(journeys))
    stages = {stage for journey in default for stage in journey.stages}
    named: list[tuple[tuple[Any, ...], str]] = [
        (("expect", "stages", index), stage) for index, stage in enumerate(expectations.stages)
    ]
    if expectations.final_stage:
        named.append((("expect", "final_stage"), expectations.final_stage))
    for where, stage in named:
        if stage not in stages:
            problems.append((where, f"no stage {stage!r}{suggest(stage, stages)}"))
    if not problems:
        return []
    root = compose_yaml(path.read_text(encoding="utf-8"))
    return [f"{path}:{line_of(root, where)}: {'.'.join(map(str, where))}: {text}" for where, text in problems]


def _sends(journeys: Iterable[Journey]) -> set[tuple[str, str]]:
    return {
        (step.send.template, step.send.channel)
        for journey in journeys
        for stage in journey.stages.values()
        for step in iter_steps(stage.flow)
        if isinstance(step, SendStep)
    }
