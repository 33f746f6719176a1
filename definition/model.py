"""The journey definition: one typed model for the validator, simulator, workflow and docs.

A journey file is YAML. Steps are written as one-key mappings (`- send: {...}`,
`- wait: 3d`) and parsed into a union keyed by that key, so a new step kind is one
class here and every tool learns it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import time, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, assert_never, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from definition.channels import Channel
from definition.durations import Duration
from definition.events import EventType
from definition.metrics import METRIC_EVENTS

_NAME = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendSpec(_Strict):
    channel: Channel
    template: str = Field(pattern=_NAME)
    transactional: bool = False
    conversion_window: Duration | None = None
    """A purchase within this period after the send counts as converted (KPIs); without it,
    the journey's `conversion_window`."""
    url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[^\s/?#]+[^\s]*$")
    """For `channel: webhook`: the shop's endpoint the signed JSON body is POSTed to."""

    @model_validator(mode="after")
    def _url_for_webhooks(self) -> SendSpec:
        if (self.channel is Channel.WEBHOOK) != (self.url is not None):
            raise ValueError("a webhook send needs `url: https://...`, and only a webhook send takes one")
        return self


class WaitSpec(_Strict):
    duration: Duration | None = None
    until: time | None = None
    """Next occurrence of this local time of day (customer's time zone), after `duration`."""
    since: Literal["step", "stage"] = "step"
    """Count `duration` from reaching this step, or from entering the stage (a fixed offset
    that quiet-hour delays of earlier sends do not push back)."""

    @model_validator(mode="after")
    def _one_of(self) -> WaitSpec:
        if self.duration is None and self.until is None:
            raise ValueError("wait needs a duration (e.g. 3d) or until (e.g. '10:00')")
        return self


class WaitForSpec(_Strict):
    event: str = Field(pattern=_NAME)
    when: str | None = None
    timeout: Duration
    then: list[Step] = []
    on_timeout: list[Step] = []


class BranchSpec(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    condition: str = Field(alias="if")
    then: list[Step] = []
    otherwise: list[Step] = Field(default=[], alias="else")


class SplitArm(_Strict):
    name: str = Field(pattern=_NAME)
    weight: int = Field(gt=0)
    flow: list[Step] = []


class WinnerRule(_Strict):
    """When a split's arms have enough customers and one converts better with this confidence,
    every new entrant assigned to an arm gets the winning arm (the holdout stays the holdout,
    so the control keeps being measured)."""

    metric: Literal["conversion"] = "conversion"
    min_customers: int = Field(default=500, gt=0)
    """Customers per arm whose window has ended, before any decision."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """The best arm wins when its difference to the runner-up has p < 1 - confidence."""
    window: Duration | None = None
    """A purchase this long after the assignment counts as the customer's conversion (see
    `split_window` for the default)."""


class SplitSpec(_Strict):
    name: str = Field(pattern=_NAME)
    arms: list[SplitArm] = Field(min_length=1)
    holdout: int = Field(default=0, ge=0, lt=100)
    """Percent of customers who get none of the arms: the control group."""
    winner: WinnerRule | None = None

    @model_validator(mode="after")
    def _winner_among_arms(self) -> SplitSpec:
        if self.winner is not None and len(self.arms) < 2:
            raise ValueError("a `winner:` rule compares arms: give the split two arms or more")
        return self


class RepeatSpec(_Strict):
    flow: list[Step] = Field(min_length=1)
    times: int | None = Field(default=None, gt=0)
    """None repeats until the stage is left."""


class ExitSpec(_Strict):
    reason: str = "completed"


class SendStep(_Strict):
    send: SendSpec


class WaitStep(_Strict):
    wait: WaitSpec

    @field_validator("wait", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # A bare number (`wait: 5`) goes to the duration too, whose error asks for a unit.
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return {"duration": value}
        return value


class WaitForStep(_Strict):
    wait_for: WaitForSpec


class BranchStep(_Strict):
    branch: BranchSpec


class SplitStep(_Strict):
    split: SplitSpec


class RepeatStep(_Strict):
    repeat: RepeatSpec


class ExitStep(_Strict):
    exit: ExitSpec = ExitSpec()

    @field_validator("exit", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {} if value is None or value is True else value


AnyStep = SendStep | WaitStep | WaitForStep | BranchStep | SplitStep | RepeatStep | ExitStep
"""Every step kind: a new one is a class above, added here, and mypy names each dispatch
that must learn it."""


def step_kind(step: AnyStep | type[AnyStep]) -> str:
    """The key a journey file writes the step under: its model's only field."""
    model = step if isinstance(step, type) else type(step)
    return next(iter(model.model_fields))


STEP_KINDS = tuple(step_kind(model) for model in get_args(AnyStep))


def _step_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value in STEP_KINDS else None
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        return key if key in STEP_KINDS else None
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


def _expand_bare(value: Any) -> Any:
    return {value: None} if isinstance(value, str) else value


if TYPE_CHECKING:
    Step = AnyStep
else:
    # Parsed as a union keyed by the step's one key; the tags come from the union itself.
    Step = Annotated[
        Union[tuple(Annotated[model, Tag(step_kind(model))] for model in get_args(AnyStep))],
        Discriminator(
            _step_kind,
            custom_error_type="unknown_step",
            custom_error_message="unknown step: use one of " + ", ".join(STEP_KINDS),
        ),
        BeforeValidator(_expand_bare),
    ]


class Transition(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    on: str | None = Field(default=None, pattern=_NAME)
    when: str | None = None
    after: Duration | None = None
    without: str | None = Field(default=None, pattern=_NAME)
    """With `after`: the period is measured from the later of stage entry and this event."""
    to: str

    @model_validator(mode="after")
    def _trigger(self) -> Transition:
        if (self.on is None) == (self.after is None):
            raise ValueError("a transition needs either `on: EVENT` or `after: PERIOD`")
        if self.without is not None and self.after is None:
            raise ValueError("`without` only goes with `after`")
        return self


class Entry(_Strict):
    """Where a customer starts: on an event (`on: signed_up`), or, for a customer brought in by
    `cyklo import`, by the metrics their order history gives (`imported: true`, with `when`)."""

    on: str | None = Field(default=None, pattern=_NAME)
    imported: bool = False
    when: str | None = None
    to: str

    @model_validator(mode="after")
    def _one_trigger(self) -> Entry:
        if (self.on is None) == (not self.imported):
            raise ValueError("an entry needs either `on: EVENT` or `imported: true`")
        return self

    @property
    def trigger(self) -> str:
        """The event type that takes this entry: an import's start is the `imported` event."""
        return self.on if self.on is not None else EventType.IMPORTED


class Stage(_Strict):
    description: str = ""
    flow: list[Step] = []
    transitions: list[Transition] = []


class QuietHours(_Strict):
    start: time = time(21, 0)
    end: time = time(9, 0)


Versioning = Literal["pin", "stage_boundary"]

REMOVED_STAGE_EXITS = "exit"
"""`removed_stages: {old: exit}`: a customer bound for the removed stage leaves the journey."""


class Journey(_Strict):
    journey: str = Field(pattern=_NAME)
    name: str
    description: str = ""
    locales: list[str] = Field(default=["pl", "en"], min_length=1)
    default_timezone: str = "Europe/Warsaw"
    quiet_hours: QuietHours | None = QuietHours()
    conversion_window: Duration | None = None
    """The window of every marketing send that names none; without either, a send is not
    credited with purchases."""
    entry: list[Entry] = Field(min_length=1)
    stages: dict[str, Stage] = Field(min_length=1)
    versioning: Versioning = "pin"
    """Whether customers already in the journey adopt this version when it is published:
    `stage_boundary` the next time they enter a stage, `pin` never (they finish on the
    version they run). A file that does not say is `pin`, what every version was before."""
    renamed_stages: dict[str, str] = {}
    """A stage of an earlier version (key) that is this one under another name (value)."""
    removed_stages: dict[str, str] = {}
    """A stage of an earlier version (key) and where its customers go instead: a stage of
    this version, or `exit` to leave the journey."""

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, stages: dict[str, Stage]) -> dict[str, Stage]:
        for name in stages:
            if not re.match(_NAME, name):
                raise ValueError(f"stage name {name!r} must be lower-case letters, digits and _")
        return stages

    def event_types(self) -> set[str]:
        """Every event type this journey reacts to; the router sends it these."""
        types = self.entry_event_types() | METRIC_EVENTS
        for stage in self.stages.values():
            for transition in stage.transitions:
                types.update(t for t in (transition.on, transition.without) if t)
            types.update(
                step.wait_for.event for step in iter_steps(stage.flow) if isinstance(step, WaitForStep)
            )
        return types

    def entry_event_types(self) -> set[str]:
        return {entry.trigger for entry in self.entry}

    def sends(self) -> list[tuple[str, SendSpec]]:
        """(stage, send) of every send step, stage by stage in file order."""
        return [
            (name, step.send)
            for name, stage in self.stages.items()
            for step in iter_steps(stage.flow)
            if isinstance(step, SendStep)
        ]


def conversion_window(journey: Journey, send: SendSpec) -> timedelta | None:
    """How long after `send` goes out a purchase counts as its conversion; None: never
    (a transactional message, or neither the step nor the journey gives a window)."""
    if send.transactional:
        return None
    return send.conversion_window or journey.conversion_window


DEFAULT_SPLIT_WINDOW = timedelta(days=7)


def split_window(journey: Journey, split: SplitSpec) -> timedelta:
    """How long after an assignment a purchase counts as the customer's conversion in the
    split (the arms and the holdout alike): the winner rule's window, else the journey's
    `conversion_window`, else 7 days."""
    if split.winner is not None and split.winner.window is not None:
        return split.winner.window
    return journey.conversion_window or DEFAULT_SPLIT_WINDOW


def child_flows(step: AnyStep) -> list[tuple[str, list[AnyStep]]]:
    """The nested flows of a step, each with the path segment that names it."""
    match step:
        case WaitForStep():
            return [("then", step.wait_for.then), ("on_timeout", step.wait_for.on_timeout)]
        case BranchStep():
            return [("then", step.branch.then), ("else", step.branch.otherwise)]
        case SplitStep():
            return [(arm.name, arm.flow) for arm in step.split.arms]
        case RepeatStep():
            return [("flow", step.repeat.flow)]
        case SendStep() | WaitStep() | ExitStep():
            return []
        case _:
            assert_never(step)


def iter_steps(flow: list[AnyStep]) -> Iterator[AnyStep]:
    for step in flow:
        yield step
        for _, child in child_flows(step):
            yield from iter_steps(child)


for _model in (WaitForSpec, BranchSpec, SplitArm, RepeatSpec, Stage):
    _model.model_rebuild()
