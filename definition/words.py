"""A stage's flow in a support person's words: `email welcome, wait 3d, then email first_order_nudge`.

The support page shows what each stage does with these; the journey file stays the truth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from definition.conditions import in_words
from definition.durations import format_duration
from definition.model import (
    AnyStep,
    BranchStep,
    ExitStep,
    RepeatStep,
    SendStep,
    SplitStep,
    WaitForStep,
    WaitSpec,
    WaitStep,
)


def flow_in_words(steps: Sequence[AnyStep]) -> str:
    """Each step as a phrase; a wait leads into what follows it with "then"."""
    text = ""
    for step in steps:
        phrase = step_in_words(step)
        if not text:
            text = phrase
        elif text.endswith(", then"):
            text = f"{text} {phrase}"
        else:
            text = f"{text}, {phrase}"
        if isinstance(step, WaitStep):
            text += ", then"
    return text.removesuffix(", then") or "nothing"


def step_in_words(step: AnyStep) -> str:
    match step:
        case SendStep(send=send):
            return f"{send.channel} {send.template}" + (" (transactional)" if send.transactional else "")
        case WaitStep(wait=wait):
            return wait_in_words(wait)
        case WaitForStep(wait_for=wait_for):
            when = f" where {in_words(wait_for.when)}" if wait_for.when else ""
            then = f", if it comes ({flow_in_words(wait_for.then)})" if wait_for.then else ""
            otherwise = f", if not ({flow_in_words(wait_for.on_timeout)})" if wait_for.on_timeout else ""
            return (
                f"wait up to {format_duration(wait_for.timeout)} for {wait_for.event}{when}{then}{otherwise}"
            )
        case BranchStep(branch=branch):
            otherwise = f" otherwise ({flow_in_words(branch.otherwise)})" if branch.otherwise else ""
            return f"if {in_words(branch.condition)} ({flow_in_words(branch.then)}){otherwise}"
        case SplitStep(split=split):
            total = sum(arm.weight for arm in split.arms)
            arms = "; ".join(
                f"{arm.name} {arm.weight * (100 - split.holdout) / total:g} % ({flow_in_words(arm.flow)})"
                for arm in split.arms
            )
            holdout = f"; holdout {split.holdout} % (nothing)" if split.holdout else ""
            return f"split {split.name}: {arms}{holdout}"
        case RepeatStep(repeat=repeat):
            times = f"{repeat.times} times" if repeat.times is not None else "while in the stage"
            return f"repeat {times} ({flow_in_words(repeat.flow)})"
        case ExitStep(exit=exit_spec):
            return f"exit ({exit_spec.reason})"
        case _:
            assert_never(step)


def wait_in_words(wait: WaitSpec) -> str:
    """`wait 3d`, `wait 261d since entering the stage`, `wait until 10:00`: also the step label
    support sees while a customer waits (definition.program)."""
    words = ["wait"]
    if wait.duration is not None:
        words.append(format_duration(wait.duration))
        if wait.since == "stage":
            words.append("since entering the stage")
    if wait.until is not None:
        words.append(f"until {wait.until.strftime('%H:%M')}")
    return " ".join(words)
