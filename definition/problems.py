"""A problem in a journey file, as `file:line: message`, and the report that collects them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from definition.yaml_source import key_line, line_of

Where = tuple[Any, ...]
"""A location in the journey file: mapping keys and list indexes, as in pydantic's `loc`."""


class ProblemsForPeople(Exception):
    """Problems of a file a person wrote (a journey, a scenario), one per line: the command
    prints them as they are, with no trace."""


class SaidToPeople(Exception):
    """An error whose message already says what happened and what to do (a port in use, a
    key list written wrong): a command prints it as it is, with no class name."""


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    """1-based; 0 when the problem is about the path itself (it does not exist, say)."""
    message: str

    def __str__(self) -> str:
        where = f"{shown(self.path)}:{self.line}" if self.line else shown(self.path)
        return f"{where}: {one_line(self.message)}"


LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
"""What str.splitlines breaks at: a problem quoting a key or value with one of these must
still be one `file:line: message` line (found by tests/test_validate_fuzz.py)."""


def one_line(text: str) -> str:
    return "".join(repr(char)[1:-1] if char in LINE_BREAKS else char for char in text)


class Report:
    """Problems of one journey file, each on the YAML line of what it is about."""

    def __init__(self, path: Path, root: yaml.Node) -> None:
        self.path = path
        self.root = root
        self.problems: list[Problem] = []

    def at(self, where: Where, message: str) -> None:
        self.problems.append(Problem(self.path, line_of(self.root, where), message))

    def at_key(self, where: Where, message: str) -> None:
        self.problems.append(Problem(self.path, key_line(self.root, where), message))


def shown(path: Path) -> str:
    """The path as given, or relative to the working folder when it is inside it."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return str(path)


def suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""
