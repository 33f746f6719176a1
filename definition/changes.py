"""What changed between two versions of a journey, in the words of its file: stages and
steps added, removed or changed, and templates by name and locale."""

from __future__ import annotations

import difflib
import json
from typing import Any


def changes(
    old_definition: str | None,
    old_templates: dict[str, str],
    new_definition: str,
    new_templates: dict[str, str],
) -> list[str]:
    """One line per change from the old version (None: there is none) to the new; empty
    when they are the same."""
    new = json.loads(new_definition)
    if old_definition is None:
        return [f"new journey: stages {', '.join(new['stages'])}"]
    old = json.loads(old_definition)
    lines = []
    settings = [
        key for key in sorted(set(old) | set(new)) if key != "stages" and old.get(key) != new.get(key)
    ]
    if settings:
        lines.append(f"changed: {', '.join(settings)}")
    for stage in new["stages"]:
        if stage not in old["stages"]:
            lines.append(f"stage {stage} added")
    for stage in old["stages"]:
        if stage not in new["stages"]:
            lines.append(f"stage {stage} removed")
    for stage, after in new["stages"].items():
        before = old["stages"].get(stage)
        if before is not None:
            lines += _stage_changes(stage, before, after)
    return lines + _template_changes(old_templates, new_templates)


def _stage_changes(stage: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    old_steps = [json.dumps(step, sort_keys=True) for step in before.get("flow", [])]
    new_steps = [json.dumps(step, sort_keys=True) for step in after.get("flow", [])]
    matcher = difflib.SequenceMatcher(a=old_steps, b=new_steps, autojunk=False)
    for operation, old_from, old_to, new_from, new_to in matcher.get_opcodes():
        if operation == "equal":
            continue
        replaced = operation == "replace" and old_to - old_from == new_to - new_from
        if replaced:
            for offset in range(old_to - old_from):
                lines.append(
                    f"stage {stage} step {new_from + offset + 1} changed: "
                    f"{_step(before['flow'][old_from + offset])} → {_step(after['flow'][new_from + offset])}"
                )
            continue
        for index in range(old_from, old_to):
            lines.append(f"stage {stage} step {index + 1} removed: {_step(before['flow'][index])}")
        for index in range(new_from, new_to):
            lines.append(f"stage {stage} step {index + 1} added: {_step(after['flow'][index])}")
    for key in sorted((set(before) | set(after)) - {"flow"}):
        if before.get(key) != after.get(key):
            lines.append(f"stage {stage} {key} changed")
    return lines


def _step(step: dict[str, Any]) -> str:
    """A step as a marketer would name it: `send email welcome`, `wait 3d`, `branch`."""
    kind, spec = next(iter(step.items()))
    if kind == "send":
        return f"send {spec['channel']} {spec['template']}"
    if kind == "wait":
        parts = []
        if spec.get("duration") is not None:
            parts.append(str(spec["duration"]))  # the model writes durations as in the file: 3d
        if spec.get("until") is not None:
            parts.append(f"until {spec['until']}")
        return " ".join(["wait", *parts])
    if kind == "wait_for":
        return f"wait_for {spec['event']}"
    if kind == "split":
        return f"split {spec['name']}"
    if kind == "branch":
        return f"branch if {spec['if']}"
    return str(kind)


def _template_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """`pl/email/welcome.html` and its parts read as one template: `welcome (email, pl)`."""
    verdicts: dict[str, set[str]] = {}
    for relative in sorted(set(old) | set(new)):
        if old.get(relative) == new.get(relative):
            continue
        locale, channel, file = relative.split("/", 2)
        name = file.split(".")[0]
        verdict = "added" if relative not in old else "removed" if relative not in new else "changed"
        verdicts.setdefault(f"template {name} ({channel}, {locale})", set()).add(verdict)
    return [
        f"{template} {next(iter(found)) if len(found) == 1 else 'changed'}"
        for template, found in verdicts.items()
    ]
