"""YAML problems of a journey file: syntax errors where the author can find them, and duplicate keys."""

from __future__ import annotations

from pathlib import Path

import yaml

from definition.problems import Problem


def yaml_problem(path: Path, text: str, error: yaml.YAMLError) -> Problem:
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


def duplicate_keys(path: Path, root: yaml.Node | None) -> list[Problem]:
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
