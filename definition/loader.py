"""Loading journey files: every problem as `file:line: message`, all of a file in one pass.

A journey is checked in layers: YAML, the schema (the pydantic model), the stages and flows,
then the templates its sends use. A marketer fixes a file in one go, so a layer that fails
does not hide the next where that can be avoided: steps, transitions and entries the schema
rejects are set aside and the rest of the file is still checked.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from jinja2 import FunctionLoader, TemplateSyntaxError, meta, nodes
from pydantic import BaseModel, Tag, ValidationError

from definition import conditions, templates
from definition.model import (
    STEP_KINDS,
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
from definition.sandbox import BoundedEnvironment, LimitExceeded, spending, template_budget
from definition.yaml_source import JourneyYamlLoader, child_node, compose_yaml, key_line, line_of, oversized

MAX_FILE = 1_000_000
"""Characters of one journey file."""

Where = tuple[Any, ...]
"""A location in the journey file: mapping keys and list indexes, as in pydantic's `loc`."""


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    """1-based; 0 when the problem is about the path itself (it does not exist, say)."""
    message: str

    def __str__(self) -> str:
        where = f"{_shown(self.path)}:{self.line}" if self.line else _shown(self.path)
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class LoadedJourney:
    definition: Journey
    path: Path
    templates: dict[str, str]
    """Relative template path (`pl/email/welcome.html`) → source, for the templates used and
    the layouts they extend or include."""
    content_hash: str
    """sha256 of the YAML and its templates: a published version's identity."""


class JourneyProblems(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def load_journey(path: Path, templates_dir: Path | None = None) -> tuple[LoadedJourney | None, list[Problem]]:
    """The journey in `path` with its templates (default: `templates/` beside it), or its problems."""
    templates_dir = path.parent / "templates" if templates_dir is None else templates_dir
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [Problem(path, 1, "not a journey file: it is not UTF-8 text")]
    except OSError as error:
        return None, [Problem(path, 1, f"cannot read the file: {error.strerror or error}")]
    if len(text) > MAX_FILE:
        return None, [Problem(path, 1, f"journey file is {len(text):,} characters long: at most {MAX_FILE:,}")]
    try:
        root = compose_yaml(text)
        too_large = oversized(root)
        if too_large is not None:
            return None, [Problem(path, *too_large)]
        # Before construction, which writes `<<: *anchor` merges into the mappings and so
        # would make an overridden merged key look like a duplicate.
        problems = _duplicate_keys(path, root)
        data = _construct(root)
    except yaml.YAMLError as error:
        return None, [_yaml_problem(path, text, error)]
    except RecursionError:
        return None, [Problem(path, 1, "YAML nested too deeply to read")]
    if root is None or not isinstance(data, dict):
        return None, [Problem(path, 1, "a journey file is a mapping with journey, name, entry and stages")]

    journey, checked, schema_problems = _validated(path, root)
    problems += schema_problems
    sources: dict[str, str] = {}
    if journey is not None:
        report = _Report(path, checked)
        # Reachability and endless repeats are about the whole flow: with parts of it set
        # aside they would report mistakes that are not there.
        _check_stages(report, journey, whole=not schema_problems)
        sends = _check_flows(report, journey, whole=not schema_problems)
        sources, template_problems = _check_templates(report, journey, sends, templates_dir)
        problems += report.problems + template_problems
    if problems or journey is None:
        return None, sorted(
            problems, key=lambda problem: (problem.path != path, str(problem.path), problem.line)
        )
    digest = hashlib.sha256(text.encode())
    for name in sorted(sources):
        digest.update(b"\0" + name.encode() + b"\0" + sources[name].encode())
    return LoadedJourney(journey, path, sources, digest.hexdigest()), []


def load_journeys(paths: Sequence[Path]) -> tuple[list[LoadedJourney], list[Problem]]:
    """Journeys of files and folders (every `*.yaml`/`*.yml` directly in a folder), or problems."""
    files, problems = _journey_files(paths)
    loaded: list[LoadedJourney] = []
    first: dict[str, LoadedJourney] = {}
    for file in files:
        journey, found = load_journey(file)
        problems += found
        if journey is None:
            continue
        name = journey.definition.journey
        if name in first:
            problems.append(
                Problem(
                    file,
                    line_of(compose_yaml(file.read_text(encoding="utf-8")), ("journey",)),
                    f"journey {name!r} is already defined in {_shown(first[name].path)}: "
                    "each journey needs its own id",
                )
            )
            continue
        first[name] = journey
        loaded.append(journey)
    return loaded, problems


def load_journeys_or_raise(paths: Sequence[Path]) -> list[LoadedJourney]:
    loaded, problems = load_journeys(paths)
    if problems:
        raise JourneyProblems(problems)
    if not loaded:
        where = paths[0] if paths else Path(".")
        raise JourneyProblems([Problem(where, 0, "no journey files (*.yaml, *.yml) found")])
    return loaded


def _journey_files(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.is_file():
            found = [path]
        else:
            problems.append(Problem(path, 0, "no such file or folder"))
            found = []
        for file in found:
            # The same file named twice (`journeys/ journeys/lifecycle.yaml`) is one journey.
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files, problems


class _Report:
    """Problems of one journey file, each on the YAML line of what it is about."""

    def __init__(self, path: Path, root: yaml.Node) -> None:
        self.path = path
        self.root = root
        self.problems: list[Problem] = []

    def at(self, where: Where, message: str) -> None:
        self.problems.append(Problem(self.path, line_of(self.root, where), message))

    def at_key(self, where: Where, message: str) -> None:
        self.problems.append(Problem(self.path, key_line(self.root, where), message))


def _shown(path: Path) -> str:
    """The path as given, or relative to the working folder when it is inside it."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return str(path)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


# YAML


def _construct(node: yaml.Node | None) -> Any:
    """Python data of a composed document: parsed once, so the data and its lines agree."""
    if node is None:
        return None
    loader = JourneyYamlLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(path: Path, text: str, error: yaml.YAMLError) -> Problem:
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        character = error.character if isinstance(error.character, str) else chr(error.character)
        return Problem(path, line, f"YAML syntax error: character #x{ord(character):04x}: {error.reason}")
    if not isinstance(error, yaml.MarkedYAMLError):
        return Problem(path, 1, f"YAML syntax error: {error}")
    problem = error.problem or error.context or "cannot read this"
    mark = error.problem_mark
    if error.context_mark is not None and (
        mark is None or "end of stream" in problem or "<stream end>" in problem
    ):
        # Nothing to point at the end of the file: where the unclosed thing began helps more.
        mark = error.context_mark
    line = mark.line + 1 if mark is not None else 1
    if "'\\t'" in problem:
        return Problem(path, line, "YAML syntax error: a tab character: indent with spaces, not tabs")
    message = f"YAML syntax error: {problem}"
    if error.context and error.problem:
        context_line = error.context_mark.line + 1 if error.context_mark is not None else line
        message += f" ({error.context}{f', line {context_line}' if context_line != line else ''})"
    return Problem(path, line, message)


def _duplicate_keys(path: Path, root: yaml.Node | None) -> list[Problem]:
    """YAML keeps the last of two equal keys without a word: a second stage of the same name
    would silently replace the first."""
    problems: list[Problem] = []
    seen: set[int] = set()
    pending = [root] if root is not None else []
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                pending.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                if key.value in first:
                    problems.append(
                        Problem(
                            path,
                            line,
                            f"duplicate key {key.value!r} (also on line {first[key.value]}): "
                            "YAML keeps only the last one",
                        )
                    )
                else:
                    first[key.value] = line
        elif isinstance(node, yaml.SequenceNode):
            pending += node.value
    return problems


# The schema


def _validated(path: Path, root: yaml.Node) -> tuple[Journey | None, yaml.Node, list[Problem]]:
    """The journey, the YAML it was read from and the schema's problems.

    With schema problems, the journey is the file without the list items (steps,
    transitions, entries, arms) that hold them, and the YAML is cut the same way so that
    line numbers still match; None if a problem is outside any list item.
    """
    try:
        return Journey.model_validate(_construct(root)), root, []
    except ValidationError as error:
        errors = error.errors()
    problems = _schema_problems(path, root, errors)
    checked = root
    while True:
        broken = [_enclosing_item(checked, tuple(item["loc"])) for item in errors]
        if any(item is None for item in broken):
            return None, root, problems
        checked = _without(checked, {id(item) for item in broken}, {})
        try:
            return Journey.model_validate(_construct(checked)), checked, problems
        except ValidationError as error:
            # Setting items aside can break what holds them (an empty list of arms, say):
            # those are not the author's mistakes, so they are not reported.
            errors = error.errors()


def _enclosing_item(root: yaml.Node, loc: Where) -> yaml.Node | None:
    node, item = root, None
    for element in loc:
        child = child_node(node, element)
        if child is None:
            continue  # a union tag, or a missing field
        if isinstance(node, yaml.SequenceNode):
            item = child
        node = child
    return item


def _without(node: yaml.Node, dropped: set[int], copies: dict[int, yaml.Node]) -> yaml.Node:
    """A copy of the YAML tree without the `dropped` sequence items (anchors may make cycles)."""
    if id(node) in copies:
        return copies[id(node)]
    if isinstance(node, yaml.SequenceNode):
        sequence = yaml.SequenceNode(node.tag, [], node.start_mark, node.end_mark, node.flow_style)
        copies[id(node)] = sequence
        sequence.value = [_without(item, dropped, copies) for item in node.value if id(item) not in dropped]
        return sequence
    if isinstance(node, yaml.MappingNode):
        mapping = yaml.MappingNode(node.tag, [], node.start_mark, node.end_mark, node.flow_style)
        copies[id(node)] = mapping
        mapping.value = [(key, _without(value, dropped, copies)) for key, value in node.value]
        return mapping
    return node


def _schema_problems(path: Path, root: yaml.Node, errors: list[Any]) -> list[Problem]:
    problems = []
    suggested: set[tuple[Where, Any]] = set()
    for item in errors:
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1)
            suggested.update((loc[:-1], name) for name in close)
    for item in errors:
        loc = tuple(item["loc"])
        if item["type"] == "missing" and (loc[:-1], loc[-1]) in suggested:
            continue  # `templat: x` is one mistake: the suggestion says it, "missing template" is noise
        if item["type"] == "extra_forbidden":
            problems.append(Problem(path, key_line(root, loc), _schema_message(item)))
        else:
            problems.append(Problem(path, line_of(root, loc), _schema_message(item)))
    return problems


_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "time_type": "a time of day, e.g. 10:00",
    "time_parsing": "a time of day, e.g. 10:00",
}


def _schema_message(item: Any) -> str:
    loc = tuple(item["loc"])
    kind = item["type"]
    given = item.get("input")
    names = [str(part) for part in loc if isinstance(part, str)]
    field = names[-1] if names else "journey"
    label = f"item {loc[-1] + 1} of {field}" if loc and isinstance(loc[-1], int) else field
    if kind == "unknown_step":
        return _unknown_step(given)
    if kind == "extra_forbidden":
        allowed = _fields_at(loc)
        hint = _suggest(field, allowed) or (f": use {', '.join(allowed)}" if allowed else "")
        return f"unknown field {field!r}{hint}"
    if kind == "missing":
        return f"missing required field {field!r}"
    if kind in ("value_error", "assertion_error"):
        return str(item["ctx"]["error"])
    if kind in _EXPECTED:
        return f"{label} should be {_EXPECTED[kind]}{_not(given)}"
    if kind == "literal_error":
        return f"{label} should be {item['ctx']['expected']}{_not(given)}"
    if kind == "string_pattern_mismatch":
        return f"{label} {given!r} should be lower-case letters, digits and _, starting with a letter"
    if kind == "too_short":
        count = item["ctx"]["min_length"]
        return f"{label} needs at least {count} item{'' if count == 1 else 's'}"
    message = item["msg"]
    if message.startswith("Input should be "):
        return f"{label} should be {message.removeprefix('Input should be ')}{_not(given)}"
    return f"{label}: {message}"


def _not(given: Any) -> str:
    if isinstance(given, dict):
        return ", not a mapping"
    if isinstance(given, list):
        return ", not a list"
    return f", not {given!r}"


def _unknown_step(given: Any) -> str:
    kinds = ", ".join(STEP_KINDS)
    if isinstance(given, dict) and len(given) > 1:
        return (
            f"one step per '- ' item, but this one has {', '.join(map(str, given))}: "
            f"start each step on its own '- ' line"
        )
    name = next(iter(given)) if isinstance(given, dict) and given else given
    if isinstance(name, str):
        return f"unknown step {name!r}{_suggest(name, STEP_KINDS) or f': use one of {kinds}'}"
    return f"a step is one of {kinds}, e.g. `- wait: 3d`, not {name!r}"


def _fields_at(loc: Where) -> list[str]:
    """The fields allowed where a validation error's location ends: a typo's candidates."""
    annotation: Any = Journey
    for element in loc[:-1]:
        annotation = _inner(annotation, element)
    model = _unwrapped(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [info.alias or name for name, info in model.model_fields.items()]
    return []


def _inner(annotation: Any, element: Any) -> Any:
    """The type at `element` of a location inside a value of type `annotation`."""
    annotation = _unwrapped(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if element in (name, info.alias):
                return info.annotation
        return None
    origin, arguments = get_origin(annotation), get_args(annotation)
    if origin is list:
        return arguments[0]
    if origin is dict:
        return arguments[1]
    if origin in (Union, types.UnionType):
        for argument in arguments:
            if get_origin(argument) is Annotated and Tag(element) in argument.__metadata__:
                return argument
    return None


def _unwrapped(annotation: Any) -> Any:
    """Without `Annotated[...]` and without `| None`."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if get_origin(annotation) in (Union, types.UnionType):
            present = [argument for argument in get_args(annotation) if argument is not type(None)]
            if len(present) == 1:
                annotation = present[0]
                continue
        return annotation


# Stages and flows


def _check_stages(report: _Report, journey: Journey, whole: bool) -> None:
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


def _check_flows(report: _Report, journey: Journey, whole: bool) -> list[tuple[Where, SendStep]]:
    """Conditions, splits and repeats of every flow; returns the sends, for their templates."""
    sends = []
    for name, stage in journey.stages.items():
        for where, step in _steps(stage.flow, ("stages", name, "flow")):
            if isinstance(step, SendStep):
                sends.append((where, step))
            elif isinstance(step, WaitForStep):
                _check_condition(report, (*where, "wait_for", "when"), step.wait_for.when)
            elif isinstance(step, BranchStep):
                _check_condition(report, (*where, "branch", "if"), step.branch.condition)
            elif isinstance(step, SplitStep):
                named: set[str] = set()
                for index, arm in enumerate(step.split.arms):
                    if arm.name in named:
                        report.at(
                            (*where, "split", "arms", index, "name"),
                            f"split {step.split.name!r} has two arms named {arm.name!r}: arm names must differ",
                        )
                    named.add(arm.name)
            elif isinstance(step, RepeatStep) and step.repeat.times is None and whole:
                _check_endless(report, where, step)
    return sends


def _steps(flow: list[Any], where: Where) -> Iterator[tuple[Where, Any]]:
    """Every step of a flow and its nested flows, with its location in the file."""
    for index, step in enumerate(flow):
        here = (*where, index)
        yield here, step
        for position, (segment, child) in enumerate(child_flows(step)):
            inside = ("arms", position, "flow") if isinstance(step, SplitStep) else (segment,)
            yield from _steps(child, (*here, step_kind(step), *inside))


def _check_condition(report: _Report, where: Where, expression: str | None) -> None:
    for message in conditions.problems(expression) if expression else ():
        report.at(where, message)


def _check_endless(report: _Report, where: Where, step: RepeatStep) -> None:
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


def _stops_every_round(flow: list[Any]) -> bool:
    """Whether running `flow` always waits for time to pass, or ends the journey."""
    return any(_stops(step) for step in flow)


def _stops(step: Any) -> bool:
    if isinstance(step, WaitStep):
        wait = step.wait
        if wait.since == "stage" and wait.duration is not None:
            return False  # a fixed time after entering the stage: past on every later round
        return wait.until is not None or bool(wait.duration)
    if isinstance(step, WaitForStep):
        return step.wait_for.timeout > timedelta(0)
    if isinstance(step, BranchStep):
        return _stops_every_round(step.branch.then) and _stops_every_round(step.branch.otherwise)
    if isinstance(step, SplitStep):
        holdout_skips = step.split.holdout > 0
        return not holdout_skips and all(_stops_every_round(arm.flow) for arm in step.split.arms)
    if isinstance(step, RepeatStep):
        return _stops_every_round(step.repeat.flow)
    return isinstance(step, ExitStep)


# Templates


def _check_templates(
    report: _Report, journey: Journey, sends: list[tuple[Where, SendStep]], templates_dir: Path
) -> tuple[dict[str, str], list[Problem]]:
    """Every part of every send's message in every locale, and the layouts they use."""
    if not sends:
        return {}, []
    locales = []
    for index, locale in enumerate(journey.locales):
        if (templates_dir / locale).is_dir():
            locales.append(locale)
            continue
        default = "" if "locales" in journey.model_fields_set else " (the default locales are pl and en)"
        report.at(
            ("locales", index),
            f"locale {locale!r} has no templates: no folder {_shown(templates_dir / locale)}{default}",
        )
    used: dict[str, None] = {}
    for where, step in sends:
        send = step.send
        for locale in locales:
            for part in templates.parts(send.channel):
                relative = templates.relative_path(locale, send.channel, send.template, part)
                if relative in used:
                    continue
                used[relative] = None
                if not (templates_dir / relative).is_file():
                    others = _message_names(templates_dir / locale / send.channel)
                    report.at(
                        (*where, "send", "template"),
                        f"missing template {relative} for send {send.template!r}{_suggest(send.template, others)}",
                    )
    present = [relative for relative in used if (templates_dir / relative).is_file()]
    sources, problems = _read_templates(templates_dir, present)
    if not problems:
        problems = _sample_renders(templates_dir, sources, present)
    return sources, problems


def _message_names(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {file.name.split(".")[0] for file in folder.iterdir() if not file.name.startswith("_")}


def _read_templates(templates_dir: Path, wanted: list[str]) -> tuple[dict[str, str], list[Problem]]:
    """Sources of the `wanted` templates and of the layouts they extend, include or import."""
    environment = templates.environment({})
    sources: dict[str, str] = {}
    problems: list[Problem] = []
    pending = list(wanted)
    queued = set(wanted)
    while pending:
        relative = pending.pop(0)
        file = templates_dir / relative
        try:
            source = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(file, 1, "cannot read template: it is not UTF-8 text"))
            continue
        except OSError as error:
            problems.append(Problem(file, 1, f"cannot read template: {error.strerror or error}"))
            continue
        sources[relative] = source
        if len(source) > templates.MAX_SOURCE:
            problems.append(
                Problem(file, 1, f"template is {len(source):,} characters long: at most {templates.MAX_SOURCE:,}")
            )
            continue
        try:
            tree = environment.parse(source)
        except TemplateSyntaxError as error:
            problems.append(Problem(file, error.lineno or 1, f"template syntax error: {error.message}"))
            continue
        except (RecursionError, MemoryError):
            problems.append(Problem(file, 1, "template nested too deeply to read"))
            continue
        except ValueError as error:  # an integer literal past Python's 4,300 digits
            problems.append(Problem(file, 1, f"template syntax error: {error}"))
            continue
        problems += _unknown_variables(file, tree)
        problems += _constant_bounds(environment, file, tree)
        for referenced, line in _references(tree):
            if PurePosixPath(referenced).is_absolute() or ".." in PurePosixPath(referenced).parts:
                problems.append(
                    Problem(file, line, f"template {referenced!r} must be named from {_shown(templates_dir)}")
                )
            elif not (templates_dir / referenced).is_file():
                problems.append(
                    Problem(file, line, f"template {referenced!r} not found under {_shown(templates_dir)}")
                )
            elif referenced not in queued:
                queued.add(referenced)
                pending.append(referenced)
    return sources, problems


def _references(tree: nodes.Template) -> Iterator[tuple[str, int]]:
    """Templates named in `extends`, `include` and `import` tags, with their lines."""
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        template = getattr(node, "template", None)  # each of the four has one; the type says Stmt
        if isinstance(template, nodes.Const) and isinstance(template.value, str):
            yield template.value, node.lineno


def _unknown_variables(file: Path, tree: nodes.Template) -> list[Problem]:
    available = ", ".join(sorted(templates.TEMPLATE_NAMES))
    first_line: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load":
            first_line[node.name] = min(node.lineno, first_line.get(node.name, node.lineno))
    problems = []
    for name in sorted(meta.find_undeclared_variables(tree) - templates.TEMPLATE_NAMES):
        hint = _suggest(name, templates.TEMPLATE_NAMES)
        problems.append(
            Problem(file, first_line.get(name, 1), f"variable {name!r} is not available{hint} (available: {available})")
        )
    return problems


MAX_CONSTANT_PARTS = 100
"""Constant parts of one template checked one by one: a handful in any real template."""


def _constant_bounds(environment: BoundedEnvironment, file: Path, tree: nodes.Template) -> list[Problem]:
    """Parts of a template that are the same for every customer and go past a bound
    (`{{ 10**(10**10) }}`), wherever they are, even in a branch no sample would reach."""
    problems = []
    for part in itertools.islice(conditions.constant_parts(tree), MAX_CONSTANT_PARTS):
        template = nodes.Template([nodes.Output([copy.deepcopy(part)])], lineno=part.lineno)
        try:
            with spending(template_budget(templates.RENDER_WORK, templates.VALIDATE_SECONDS)):
                environment.from_string(template).render()
        except LimitExceeded as error:
            problems.append(Problem(file, part.lineno, f"goes past a limit: {error}"))
        except Exception:  # noqa: S112 - other failures depend on what the template is given
            continue
    return problems


def _sample_renders(templates_dir: Path, sources: dict[str, str], messages: list[str]) -> list[Problem]:
    """Render each message for a sample customer: a loop or a macro that goes past the time
    or size bounds is found here, at its line, rather than when a customer's send fails.
    Other failures (an event property the sample lacks, say) depend on the data: not reported."""
    files = {str(templates_dir / name): templates_dir / name for name in sources}
    environment = templates.environment(
        {}, FunctionLoader(lambda name: (sources[name], str(templates_dir / name), lambda: True))
    )
    problems = []
    for relative in messages:
        try:
            compiled = environment.get_template(relative)
        except TemplateSyntaxError as error:
            problems.append(Problem(templates_dir / relative, error.lineno or 1, f"template error: {error.message}"))
            continue
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            problems.append(Problem(templates_dir / relative, 1, "template too deeply nested to compile"))
            continue
        try:
            with spending(template_budget(templates.RENDER_WORK, templates.VALIDATE_SECONDS)):
                output = templates.render_part(environment, compiled, templates.sample_context())
            if (not_json := templates.output_problem(relative, output)) is not None:
                problems.append(Problem(templates_dir / relative, not_json.line, str(not_json)))
        except LimitExceeded as error:
            file, line = templates_dir / relative, 1
            trace = error.__traceback__
            while trace is not None:
                if trace.tb_frame.f_code.co_filename in files:
                    file, line = files[trace.tb_frame.f_code.co_filename], trace.tb_lineno
                trace = trace.tb_next
            problems.append(Problem(file, line, f"goes past a limit: {error}"))
        except RecursionError:
            problems.append(Problem(templates_dir / relative, 1, "template calls itself without end"))
        except Exception:  # noqa: S112 - see above
            continue
    return problems
