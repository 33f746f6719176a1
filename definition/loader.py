"""Loading journey files: every problem as `file:line: message`, all of a file in one pass."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError, meta, nodes
from pydantic import BaseModel, ValidationError

from definition import conditions, templates
from definition import model as models
from definition.model import (
    BranchStep,
    Journey,
    RepeatStep,
    SendStep,
    SplitStep,
    WaitForStep,
    WaitStep,
    child_flows,
    iter_steps,
)
from definition.yaml_source import compose_yaml, key_line, line_of, load_yaml


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{_shown(self.path)}:{self.line}" if self.line else _shown(self.path)
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class LoadedJourney:
    definition: Journey
    path: Path
    templates: dict[str, str]
    """Relative template path (`pl/email/welcome.html`) → source, for the templates used."""
    content_hash: str
    """sha256 of the YAML and its templates: a published version's identity."""


class JourneyProblems(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


_FIELD_NAMES = sorted(
    {
        alias or name
        for model in vars(models).values()
        if isinstance(model, type) and issubclass(model, BaseModel) and model.__module__ == models.__name__
        for name, info in model.model_fields.items()
        for alias in (info.alias,)
    }
)
"""Every field a journey file may use: where a typo's suggestion comes from."""


def load_journey(path: Path, templates_dir: Path | None = None) -> tuple[LoadedJourney | None, list[Problem]]:
    templates_dir = templates_dir or path.parent / "templates"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, [Problem(path, 1, f"cannot read journey file: {error}")]
    try:
        data = load_yaml(text)
        root = compose_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        if "<stream end>" in problem:
            # Nothing to point at the end of the file: where the unclosed thing began helps more.
            mark = getattr(error, "context_mark", None) or mark
        return None, [Problem(path, mark.line + 1 if mark else 1, f"YAML syntax error: {problem}")]
    if not isinstance(data, dict):
        return None, [Problem(path, 1, "a journey file is a mapping with journey, name, entry and stages")]
    try:
        journey = Journey.model_validate(data)
    except ValidationError as error:
        return None, [
            Problem(path, line_of(root, tuple(item["loc"])), _message(item)) for item in error.errors()
        ]

    problems = _structure_problems(journey, path, root)
    sources, template_problems = _template_problems(journey, path, root, templates_dir)
    problems += template_problems
    if problems:
        return None, problems
    digest = hashlib.sha256(text.encode())
    for name in sorted(sources):
        digest.update(b"\0" + name.encode() + b"\0" + sources[name].encode())
    return LoadedJourney(journey, path, sources, digest.hexdigest()), []


def _message(item: Any) -> str:
    location = [str(part) for part in item["loc"] if not isinstance(part, int)]
    field = location[-1] if location else "journey"
    kind = item["type"]
    if kind == "extra_forbidden":
        return f"unknown field {field!r}{_suggest(field, _FIELD_NAMES)}"
    if kind == "missing":
        return f"missing required field {field!r}"
    if kind == "unknown_step":
        given = item.get("input")
        name = next(iter(given)) if isinstance(given, dict) and given else given
        return f"unknown step {name!r}{_suggest(str(name), models.STEP_KINDS)}: use one of {', '.join(models.STEP_KINDS)}"
    message = item["msg"].removeprefix("Value error, ")
    return f"{field}: {message}"


def _structure_problems(journey: Journey, path: Path, root: Any) -> list[Problem]:
    problems: list[Problem] = []
    stages = journey.stages
    reachable = set()
    for index, entry in enumerate(journey.entry):
        reachable.add(entry.to)
        if entry.to not in stages:
            problems.append(
                Problem(
                    path,
                    line_of(root, ("entry", index, "to")),
                    f"unknown stage {entry.to!r}{_suggest(entry.to, stages)}",
                )
            )
        if entry.when:
            problems += _conditions(entry.when, path, line_of(root, ("entry", index, "when")))
    for name, stage in stages.items():
        for index, transition in enumerate(stage.transitions):
            where = ("stages", name, "transitions", index)
            if transition.to != name:
                reachable.add(transition.to)
            if transition.to not in stages:
                problems.append(
                    Problem(
                        path,
                        line_of(root, (*where, "to")),
                        f"unknown stage {transition.to!r} in a transition of {name!r}{_suggest(transition.to, stages)}",
                    )
                )
            if transition.when:
                problems += _conditions(transition.when, path, line_of(root, (*where, "when")))
        problems += _flow_problems(stage.flow, path, root, ("stages", name, "flow"))
    for name in stages:
        if name not in reachable:
            problems.append(
                Problem(
                    path,
                    key_line(root, ("stages", name)),
                    f"stage {name!r} is unreachable: no entry or transition of another stage leads to it",
                )
            )
    return problems


def _flow_problems(flow: list[Any], path: Path, root: Any, where: tuple[Any, ...]) -> list[Problem]:
    problems: list[Problem] = []
    for index, step in enumerate(flow):
        here = (*where, index)
        if isinstance(step, WaitForStep) and step.wait_for.when:
            problems += _conditions(step.wait_for.when, path, line_of(root, (*here, "wait_for", "when")))
        if isinstance(step, BranchStep):
            problems += _conditions(step.branch.condition, path, line_of(root, (*here, "branch", "if")))
        if isinstance(step, SplitStep):
            names = [arm.name for arm in step.split.arms]
            for duplicate in sorted({name for name in names if names.count(name) > 1}):
                problems.append(
                    Problem(
                        path,
                        line_of(root, (*here, "split", "arms")),
                        f"split arm {duplicate!r} is named twice",
                    )
                )
        if isinstance(step, RepeatStep) and step.repeat.times is None:
            if not any(isinstance(inner, (WaitStep, WaitForStep)) for inner in iter_steps(step.repeat.flow)):
                problems.append(
                    Problem(
                        path,
                        line_of(root, here),
                        "repeat without `times` needs a wait in its flow, or it never stops",
                    )
                )
        for segment, child in child_flows(step):
            kind = next(iter(type(step).model_fields))
            if isinstance(step, SplitStep):
                arm_index = [arm.name for arm in step.split.arms].index(segment)
                problems += _flow_problems(child, path, root, (*here, kind, "arms", arm_index, "flow"))
            else:
                key = "else" if segment == "else" else segment
                problems += _flow_problems(child, path, root, (*here, kind, key))
    return problems


def _conditions(expression: str, path: Path, line: int) -> list[Problem]:
    return [Problem(path, line, message) for message in conditions.problems(expression)]


def _sends(journey: Journey) -> list[tuple[tuple[Any, ...], SendStep]]:
    found: list[tuple[tuple[Any, ...], SendStep]] = []

    def walk(flow: list[Any], where: tuple[Any, ...]) -> None:
        for index, step in enumerate(flow):
            here = (*where, index)
            if isinstance(step, SendStep):
                found.append((here, step))
            for segment, child in child_flows(step):
                kind = next(iter(type(step).model_fields))
                if isinstance(step, SplitStep):
                    arm_index = [arm.name for arm in step.split.arms].index(segment)
                    walk(child, (*here, kind, "arms", arm_index, "flow"))
                else:
                    walk(child, (*here, kind, segment))

    for name, stage in journey.stages.items():
        walk(stage.flow, ("stages", name, "flow"))
    return found


def _template_problems(
    journey: Journey, path: Path, root: Any, templates_dir: Path
) -> tuple[dict[str, str], list[Problem]]:
    problems: list[Problem] = []
    wanted = {
        (locale, step.send.channel, step.send.template)
        for _, step in _sends(journey)
        for locale in journey.locales
    }
    sources = templates.read_sources(templates_dir, wanted)
    reported: set[str] = set()
    for where, step in _sends(journey):
        for locale in journey.locales:
            for part in templates.parts(step.send.channel):
                relative = templates.relative_path(locale, step.send.channel, step.send.template, part)
                if relative in sources or relative in reported:
                    continue
                reported.add(relative)
                folder = templates_dir / locale / step.send.channel
                existing = {p.name.split(".")[0] for p in folder.glob("*")} if folder.is_dir() else set()
                hint = _suggest(step.send.template, existing)
                if not (templates_dir / locale).is_dir():
                    hint = f" — locale {locale!r} has no folder {_shown(templates_dir / locale)}"
                problems.append(
                    Problem(
                        path,
                        line_of(root, (*where, "send", "template")),
                        f"missing template {relative} for send {step.send.template!r}{hint}",
                    )
                )
    environment = templates.environment(sources)
    for relative, source in sorted(sources.items()):
        file = templates_dir / relative
        try:
            tree = environment.parse(source)
        except TemplateSyntaxError as error:
            problems.append(Problem(file, error.lineno or 1, f"template syntax error: {error.message}"))
            continue
        for referenced in templates.references(source):
            if referenced not in sources:
                problems.append(
                    Problem(file, 1, f"template {referenced!r} not found under {_shown(templates_dir)}")
                )
        for name in sorted(meta.find_undeclared_variables(tree) - templates.TEMPLATE_NAMES):
            line = next((node.lineno for node in tree.find_all(nodes.Name) if node.name == name), 1)
            problems.append(
                Problem(
                    file,
                    line,
                    f"variable {name!r} is not available{_suggest(name, templates.TEMPLATE_NAMES)}; "
                    f"available: {', '.join(sorted(templates.TEMPLATE_NAMES))}",
                )
            )
    return sources, problems


def journey_files(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(path, 0, "no such file or folder"))
    return files, problems


def load_journeys(paths: Sequence[Path]) -> tuple[list[LoadedJourney], list[Problem]]:
    files, problems = journey_files(paths)
    loaded: list[LoadedJourney] = []
    seen: dict[str, Path] = {}
    for file in files:
        journey, found = load_journey(file)
        problems += found
        if journey is None:
            continue
        name = journey.definition.journey
        if name in seen:
            problems.append(Problem(file, 1, f"journey {name!r} is already defined in {_shown(seen[name])}"))
            continue
        seen[name] = file
        loaded.append(journey)
    return loaded, problems


def load_journeys_or_raise(paths: Sequence[Path]) -> list[LoadedJourney]:
    loaded, problems = load_journeys(paths)
    if problems:
        raise JourneyProblems(problems)
    if not loaded:
        raise JourneyProblems(
            [Problem(Path(str(paths[0])) if paths else Path("."), 0, "no journey files found")]
        )
    return loaded
