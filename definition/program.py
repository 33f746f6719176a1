"""A stage's flow compiled to a flat program: what the workflow interprets.

A flat program makes the workflow's position a single number (plus loop counters), so
continue-as-new, queries and idempotency keys all work from plain data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, assert_never

from definition.durations import format_duration
from definition.model import (
    AnyStep,
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
from definition.words import wait_in_words


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


Program = tuple[Instruction, ...]


@dataclass
class _Builder:
    program: list[Instruction] = field(default_factory=list)

    def emit(self, instruction: Instruction) -> int:
        self.program.append(instruction)
        return len(self.program) - 1

    def patch(self, index: int, **changes: Any) -> None:
        self.program[index] = replace(self.program[index], **changes)

    def flow(self, steps: list[AnyStep], path: str, loops: tuple[str, ...]) -> None:
        for index, step in enumerate(steps):
            self.step(step, f"{path}/{index}", loops)

    def step(self, step: AnyStep, path: str, loops: tuple[str, ...]) -> None:
        match step:
            case SendStep():
                self.emit(Send(path, step.send, loops))
            case WaitStep():
                self.emit(Wait(path, step.wait))
            case ExitStep():
                self.emit(Exit(path, step.exit.reason))
            case WaitForStep():
                start = self.emit(WaitFor(path, step.wait_for, -1))
                self.flow(step.wait_for.then, f"{path}/then", loops)
                jump = self.emit(Jump(-1))
                self.patch(start, timeout_target=len(self.program))
                self.flow(step.wait_for.on_timeout, f"{path}/on_timeout", loops)
                self.patch(jump, target=len(self.program))
            case BranchStep():
                start = self.emit(Branch(path, step.branch.condition, -1))
                self.flow(step.branch.then, f"{path}/then", loops)
                jump = self.emit(Jump(-1))
                self.patch(start, else_target=len(self.program))
                self.flow(step.branch.otherwise, f"{path}/else", loops)
                self.patch(jump, target=len(self.program))
            case SplitStep():
                start = self.emit(Split(path, step.split, (), -1))
                targets, jumps = [], []
                for arm in step.split.arms:
                    targets.append(len(self.program))
                    self.flow(arm.flow, f"{path}/{arm.name}", loops)
                    jumps.append(self.emit(Jump(-1)))
                for jump in jumps:
                    self.patch(jump, target=len(self.program))
                self.patch(start, arm_targets=tuple(targets), end_target=len(self.program))
            case RepeatStep():
                start = self.emit(LoopStart(path, step.repeat.times, -1))
                self.flow(step.repeat.flow, f"{path}/flow", (*loops, path))
                self.emit(Jump(start))
                self.patch(start, end_target=len(self.program))
            case _:
                assert_never(step)


@dataclass(frozen=True)
class CompiledJourney:
    definition: Journey
    programs: dict[str, Program]


def compile_stage(journey: Journey, stage: str) -> Program:
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


@dataclass(frozen=True)
class StepLabel:
    """A step as support reads it."""

    text: str
    """`wait 2d before cross_sell`, `send email welcome`."""
    kind: str
    """The journey file's key: `send`, `wait`, `wait_for`, ..."""
    path: str


def label(program: Program, index: int) -> StepLabel | None:
    """The step at `index`, or None at the end of the flow; a jump is labelled by where it lands."""
    if index >= len(program):
        return None
    instruction = program[index]
    match instruction:
        case Send():
            send = instruction.spec
            return StepLabel(f"send {send.channel} {send.template}", "send", instruction.path)
        case Wait():
            return StepLabel(_wait_text(program, index, instruction.spec), "wait", instruction.path)
        case WaitFor():
            wait_for = instruction.spec
            text = f"wait for {wait_for.event} (at most {format_duration(wait_for.timeout)})"
            return StepLabel(text, "wait_for", instruction.path)
        case Branch():
            return StepLabel(f"branch if {instruction.condition}", "branch", instruction.path)
        case Split():
            return StepLabel(f"split {instruction.spec.name}", "split", instruction.path)
        case LoopStart():
            times = f" {instruction.times} times" if instruction.times is not None else ""
            return StepLabel(f"repeat{times}", "repeat", instruction.path)
        case Jump():
            return label(program, instruction.target)
        case Exit():
            return StepLabel(f"exit ({instruction.reason})", "exit", instruction.path)
        case _:
            assert_never(instruction)


def _wait_text(program: Program, index: int, spec: WaitSpec) -> str:
    following = next((later for later in program[index + 1 :] if isinstance(later, Send)), None)
    waiting = wait_in_words(spec)
    return f"{waiting} before {following.spec.template}" if following is not None else waiting
