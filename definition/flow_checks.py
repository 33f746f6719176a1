"""Checks of a journey's stages and flows: stage references, reachability, conditions, split
arms and repeats that would loop forever."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from datetime import timedelta
from typing import assert_never

from definition import conditions
from definition.model import (
    REMOVED_STAGE_EXITS,
    AnyStep,
    BranchStep,
    ExitStep,
    Journey,
    RepeatStep,
    SendStep,
    SplitStep,
    WaitForStep,
    WaitStep,
    child_flows,
    iter_steps,
    step_kind,
)
from definition.problems import Report, Where


def check_stages(report: Report, journey: Journey, whole: bool) -> None:
    stages = journey.stages
    starts: set[str] = set()
    leads_to: dict[str, set[str]] = {name: set() for name in stages}

    def target(where: Where, name: str) -> str | None:
        if name in stages:
            return name
        close = difflib.get_close_matches(name, list(stages), n=1)
        hint = f" — did you mean {close[0]!r}?" if close else f": stages are {', '.join(stages)}"
        report.at((*where, "to"), f"unknown stage {name!r}{hint}")
        # Taken as the stage the typo meant, so the one mistake is not also an unreachable stage.
        return close[0] if close else None

    for index, entry in enumerate(journey.entry):
        starts.update(filter(None, [target(("entry", index), entry.to)]))
        _check_condition(report, ("entry", index, "when"), entry.when)
    for name, stage in stages.items():
        for index, transition in enumerate(stage.transitions):
            where = ("stages", name, "transitions", index)
            leads_to[name].update(filter(None, [target(where, transition.to)]))
            _check_condition(report, (*where, "when"), transition.when)
    _check_stage_mappings(report, journey)
    if not whole:
        return
    reached: set[str] = set()
    pending = list(starts)
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += leads_to[name]
    for name in stages:
        if name not in reached:
            report.at_key(
                ("stages", name),
                f"stage {name!r} is unreachable: no entry, nor a transition from a stage that is reached, leads to it",
            )


def _check_stage_mappings(report: Report, journey: Journey) -> None:
    """`renamed_stages` and `removed_stages` name stages of earlier versions (not of this one)
    and send their customers to a stage of this one (or, for a removed stage, out)."""
    stages = journey.stages
    for field, mapping in (("renamed_stages", journey.renamed_stages), ("removed_stages", journey.removed_stages)):
        for old, new in mapping.items():
            if old in stages:
                report.at_key(
                    (field, old), f"{field}: {old!r} is a stage of this version: only a stage that is gone is mapped"
                )
            allowed = [*stages, REMOVED_STAGE_EXITS] if field == "removed_stages" else list(stages)
            if new not in allowed:
                close = difflib.get_close_matches(new, allowed, n=1)
                hint = f" — did you mean {close[0]!r}?" if close else f": use one of {', '.join(allowed)}"
                report.at((field, old), f"{field}: {old!r} goes to unknown stage {new!r}{hint}")
    both = set(journey.renamed_stages) & set(journey.removed_stages)
    for old in sorted(both):
        report.at_key(("removed_stages", old), f"stage {old!r} is both renamed and removed: say one")


def check_flows(report: Report, journey: Journey, whole: bool) -> list[tuple[Where, SendStep]]:
    """Conditions, splits and repeats of every flow; returns the sends, for their templates."""
    sends = []
    for name, stage in journey.stages.items():
        for where, step in _steps(stage.flow, ("stages", name, "flow")):
            match step:
                case SendStep():
                    sends.append((where, step))
                case WaitForStep():
                    _check_condition(report, (*where, "wait_for", "when"), step.wait_for.when)
                case BranchStep():
                    _check_condition(report, (*where, "branch", "if"), step.branch.condition)
                case SplitStep():
                    _check_arm_names(report, where, step)
                case RepeatStep():
                    if step.repeat.times is None and whole:
                        _check_endless(report, where, step)
                case WaitStep() | ExitStep():
                    pass
                case _:
                    assert_never(step)
    return sends


def _check_arm_names(report: Report, where: Where, step: SplitStep) -> None:
    named: set[str] = set()
    for index, arm in enumerate(step.split.arms):
        if arm.name in named:
            report.at(
                (*where, "split", "arms", index, "name"),
                f"split {step.split.name!r} has two arms named {arm.name!r}: arm names must differ",
            )
        named.add(arm.name)


def _steps(flow: list[AnyStep], where: Where) -> Iterator[tuple[Where, AnyStep]]:
    """Every step of a flow and its nested flows, with its location in the file."""
    for index, step in enumerate(flow):
        here = (*where, index)
        yield here, step
        for position, (segment, child) in enumerate(child_flows(step)):
            inside = ("arms", position, "flow") if isinstance(step, SplitStep) else (segment,)
            yield from _steps(child, (*here, step_kind(step), *inside))


def _check_condition(report: Report, where: Where, expression: str | None) -> None:
    for message in conditions.problems(expression) if expression else ():
        report.at(where, message)


def _check_endless(report: Report, where: Where, step: RepeatStep) -> None:
    if _stops_every_round(step.repeat.flow):
        return
    if any(isinstance(inner, (WaitStep, WaitForStep)) for inner in iter_steps(step.repeat.flow)):
        report.at(
            where,
            "repeat without `times` may loop forever: none of its waits pauses on every round "
            "(one inside a branch or split can be skipped; one `since: stage` with a duration "
            "is over after the first round)",
        )
    else:
        report.at(where, "repeat without `times` loops forever: add a wait to its flow, e.g. `- wait: 30d`")


def _stops_every_round(flow: list[AnyStep]) -> bool:
    """Whether running `flow` always waits for time to pass, or ends the journey."""
    return any(_stops(step) for step in flow)


def _stops(step: AnyStep) -> bool:
    match step:
        case WaitStep():
            wait = step.wait
            if wait.since == "stage" and wait.duration is not None:
                return False  # a fixed time after entering the stage: past on every later round
            return wait.until is not None or bool(wait.duration)
        case WaitForStep():
            return step.wait_for.timeout > timedelta(0)
        case BranchStep():
            return _stops_every_round(step.branch.then) and _stops_every_round(step.branch.otherwise)
        case SplitStep():
            holdout_skips = step.split.holdout > 0
            return not holdout_skips and all(_stops_every_round(arm.flow) for arm in step.split.arms)
        case RepeatStep():
            return _stops_every_round(step.repeat.flow)
        case ExitStep():
            return True
        case SendStep():
            return False
        case _:
            assert_never(step)
