"""A stage's flow compiled to a flat program: what the workflow interprets.

A flat program makes the workflow's position a single number (plus loop counters), so
continue-as-new, queries and idempotency keys all work from plain data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from definition.model import (
    BranchStep,
    ExitStep,
    Journey,
    RepeatStep,
    SendSpec,
    SendStep,
    SplitSpec,
    SplitStep,
    WaitForSpec,
    WaitForStep,
    WaitSpec,
    WaitStep,
)


@dataclass(frozen=True)
class Send:
    path: str
    spec: SendSpec
    loops: tuple[str, ...]
    """Paths of the enclosing repeat loops: their counters tell iterations apart."""


@dataclass(frozen=True)
class Wait:
    path: str
    spec: WaitSpec


@dataclass(frozen=True)
class WaitFor:
    path: str
    spec: WaitForSpec
    timeout_target: int


@dataclass(frozen=True)
class Branch:
    path: str
    condition: str
    else_target: int


@dataclass(frozen=True)
class Split:
    path: str
    spec: SplitSpec
    arm_targets: tuple[int, ...]
    end_target: int


@dataclass(frozen=True)
class LoopStart:
    path: str
    times: int | None
    end_target: int


@dataclass(frozen=True)
class Jump:
    target: int


@dataclass(frozen=True)
class Exit:
    path: str
    reason: str


Instruction = Send | Wait | WaitFor | Branch | Split | LoopStart | Jump | Exit


@dataclass
class _Builder:
    program: list[Any] = field(default_factory=list)

    def emit(self, instruction: Any) -> int:
        self.program.append(instruction)
        return len(self.program) - 1

    def patch(self, index: int, **changes: Any) -> None:
        self.program[index] = type(self.program[index])(**{**self.program[index].__dict__, **changes})

    def flow(self, steps: list[Any], path: str, loops: tuple[str, ...]) -> None:
        for index, step in enumerate(steps):
            self.step(step, f"{path}/{index}", loops)

    def step(self, step: Any, path: str, loops: tuple[str, ...]) -> None:
        if isinstance(step, SendStep):
            self.emit(Send(path, step.send, loops))
        elif isinstance(step, WaitStep):
            self.emit(Wait(path, step.wait))
        elif isinstance(step, ExitStep):
            self.emit(Exit(path, step.exit.reason))
        elif isinstance(step, WaitForStep):
            start = self.emit(WaitFor(path, step.wait_for, -1))
            self.flow(step.wait_for.then, f"{path}/then", loops)
            jump = self.emit(Jump(-1))
            self.patch(start, timeout_target=len(self.program))
            self.flow(step.wait_for.on_timeout, f"{path}/on_timeout", loops)
            self.patch(jump, target=len(self.program))
        elif isinstance(step, BranchStep):
            start = self.emit(Branch(path, step.branch.condition, -1))
            self.flow(step.branch.then, f"{path}/then", loops)
            jump = self.emit(Jump(-1))
            self.patch(start, else_target=len(self.program))
            self.flow(step.branch.otherwise, f"{path}/else", loops)
            self.patch(jump, target=len(self.program))
        elif isinstance(step, SplitStep):
            start = self.emit(Split(path, step.split, (), -1))
            targets, jumps = [], []
            for arm in step.split.arms:
                targets.append(len(self.program))
                self.flow(arm.flow, f"{path}/{arm.name}", loops)
                jumps.append(self.emit(Jump(-1)))
            for jump in jumps:
                self.patch(jump, target=len(self.program))
            self.patch(start, arm_targets=tuple(targets), end_target=len(self.program))
        elif isinstance(step, RepeatStep):
            start = self.emit(LoopStart(path, step.repeat.times, -1))
            self.flow(step.repeat.flow, f"{path}/flow", (*loops, path))
            self.emit(Jump(start))
            self.patch(start, end_target=len(self.program))
        else:  # pragma: no cover - the model's union and this builder must grow together
            raise TypeError(f"no instruction for step {type(step).__name__}")


@dataclass(frozen=True)
class CompiledJourney:
    definition: Journey
    programs: dict[str, tuple[Any, ...]]


def compile_stage(journey: Journey, stage: str) -> tuple[Any, ...]:
    builder = _Builder()
    builder.flow(journey.stages[stage].flow, stage, ())
    return tuple(builder.program)


@lru_cache(maxsize=64)
def compile_journey(definition_json: str) -> CompiledJourney:
    """Parse and compile once per published version; the workflow calls this on every run."""
    journey = Journey.model_validate_json(definition_json)
    return CompiledJourney(journey, {name: compile_stage(journey, name) for name in journey.stages})


def assign_arm(customer_id: str, journey_id: str, split: SplitSpec) -> str | None:
    """The customer's arm of a split, or None for the holdout: the same on every visit."""
    digest = hashlib.sha256(f"{journey_id}:{split.name}:{customer_id}".encode()).digest()
    if int.from_bytes(digest[:4], "big") % 100 < split.holdout:
        return None
    point = int.from_bytes(digest[4:8], "big") % sum(arm.weight for arm in split.arms)
    for arm in split.arms:
        if point < arm.weight:
            return arm.name
        point -= arm.weight
    raise AssertionError("weights cover every point")
