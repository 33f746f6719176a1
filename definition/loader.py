"""Loading journey files: every problem as `file:line: message`, all of a file in one pass.

A journey is checked in layers: YAML (definition.yaml_problems), the schema (the pydantic
model, definition.schema_problems), the stages and flows (definition.flow_checks), then the
templates its sends use (definition.template_checks). A marketer fixes a file in one go, so a
layer that fails does not hide the next where that can be avoided: steps, transitions and
entries the schema rejects are set aside and the rest of the file is still checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from definition.flow_checks import check_flows, check_stages
from definition.model import Journey
from definition.problems import Problem, ProblemsForPeople, Report, shown
from definition.schema_problems import validated
from definition.template_checks import check_templates
from definition.yaml_problems import duplicate_keys, yaml_problem
from definition.yaml_source import compose_yaml, construct, line_of, oversized

MAX_FILE = 1_000_000
"""Characters of one journey file."""


@dataclass(frozen=True)
class LoadedJourney:
    definition: Journey
    path: Path
    templates: dict[str, str]
    """Relative template path (`pl/email/welcome.html`) → source, for the templates used and
    the layouts they extend or include."""
    content_hash: str
    """sha256 of the YAML and its templates: a published version's identity."""


class JourneyProblems(ProblemsForPeople):
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
        problems = duplicate_keys(path, root)
        data = construct(root)
    except yaml.YAMLError as error:
        return None, [yaml_problem(path, text, error)]
    except RecursionError:
        return None, [Problem(path, 1, "YAML nested too deeply to read")]
    if root is None or not isinstance(data, dict):
        return None, [Problem(path, 1, "a journey file is a mapping with journey, name, entry and stages")]

    journey, checked, schema_problems = validated(path, root)
    problems += schema_problems
    sources: dict[str, str] = {}
    if journey is not None:
        report = Report(path, checked)
        # Reachability and endless repeats are about the whole flow: with parts of it set
        # aside they would report mistakes that are not there.
        check_stages(report, journey, whole=not schema_problems)
        sends = check_flows(report, journey, whole=not schema_problems)
        sources, template_problems = check_templates(report, journey, sends, templates_dir)
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
                    f"journey {name!r} is already defined in {shown(first[name].path)}: "
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
