"""A scenario: one customer, a start time, events at offsets, and how long to run."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from definition.durations import Duration
from definition.problems import ProblemsForPeople
from definition.yaml_problems import yaml_problem
from definition.yaml_source import compose_yaml, line_of, load_yaml
from routing.events import IncomingEvent
from simulation.expectations import Expectations
from storage.customers import CustomerProfile


class ScenarioEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Duration
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    id: str | None = None
    properties: dict[str, Any] = {}


class ScenarioPublish(BaseModel):
    """`{at: 25d, publish: PATH}`: a live edit — the journeys in PATH (a folder of journey
    files and templates, or one file) are published at that moment of the simulation."""

    model_config = ConfigDict(extra="forbid")

    at: Duration
    publish: Path

    @field_validator("publish")
    @classmethod
    def _beside_the_scenario(cls, path: Path, info: ValidationInfo) -> Path:
        folder = (info.context or {}).get("folder")
        path = folder / path if folder is not None and not path.is_absolute() else path
        if not path.exists():
            raise ValueError(f"{path}: no such file or folder (a path relative to the scenario file)")
        return path


ENTRY_KINDS = ("event", "publish")


def _entry_kind(value: Any) -> str:
    publishes = isinstance(value, ScenarioPublish) or (isinstance(value, dict) and "publish" in value)
    return "publish" if publishes else "event"


ScenarioEntry = Annotated[
    Union[Annotated[ScenarioEvent, Tag(ENTRY_KINDS[0])], Annotated[ScenarioPublish, Tag(ENTRY_KINDS[1])]],
    Discriminator(_entry_kind),
]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: CustomerProfile
    start: AwareDatetime
    events: list[ScenarioEntry] = []
    """In the order of `at`: the shop's events and live edits (`publish`)."""
    until: Duration
    expect: Expectations | None = None
    """What `cyklo test` checks after the run; `cyklo simulate` ignores it."""

    @field_validator("events")
    @classmethod
    def _in_order(cls, events: list[ScenarioEvent | ScenarioPublish]) -> list[ScenarioEvent | ScenarioPublish]:
        return sorted(events, key=lambda event: event.at)

    def incoming_at(self, index: int) -> IncomingEvent:
        """The `index`th entry, which must be a shop event, as the shop would send it."""
        entry = self.events[index]
        assert isinstance(entry, ScenarioEvent), f"entry {index} publishes journeys: it is not an event"
        return self.incoming(index, entry)

    def incoming(self, index: int, event: ScenarioEvent) -> IncomingEvent:
        """The event as the shop would send it; an event without id gets a stable one."""
        return IncomingEvent(
            event_id=event.id or f"{self.customer.id}-scenario-{index + 1}",
            customer_id=self.customer.id,
            type=event.type,
            occurred_at=self.start + event.at,
            properties=event.properties,
        )

    @property
    def end(self) -> datetime:
        return self.start + self.until


class ScenarioError(ProblemsForPeople, ValueError):
    """Every problem of a scenario file, each as `file:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError([f"{path}: cannot read scenario: {error}"]) from None
    try:
        data = load_yaml(text)
        root = compose_yaml(text)
    except yaml.YAMLError as error:
        raise ScenarioError([str(yaml_problem(path, text, error))]) from None
    try:
        return Scenario.model_validate(data, context={"folder": path.parent})
    except ValidationError as error:
        problems = []
        for item in error.errors():
            # An entry's kind (pydantic's union tag) is not a field the file has.
            location = [part for index, part in enumerate(item["loc"]) if not (index == 2 and part in ENTRY_KINDS)]
            field = ".".join(str(part) for part in location) or "scenario"
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{path}:{line_of(root, tuple(item['loc']))}: {field}: {message}")
        raise ScenarioError(problems) from None


def elapsed(delta: timedelta) -> str:
    """`3d 04:00` style offset from the scenario start, for the timeline."""
    days, rest = divmod(int(delta.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours:02d}:{rest // 60:02d}"
