"""Schema problems of a journey file: pydantic's errors in a marketer's words, each at its line.

Steps, transitions and entries the schema rejects are set aside, so the rest of the file
can still be checked.
"""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError

from definition.model import STEP_KINDS, Journey
from definition.problems import Problem, Where, suggest
from definition.yaml_source import child_node, construct, key_line, line_of


def validated(path: Path, root: yaml.Node) -> tuple[Journey | None, yaml.Node, list[Problem]]:
    """The journey, the YAML it was read from and the schema's problems.

    With schema problems, the journey is the file without the list items (steps,
    transitions, entries, arms) that hold them, and the YAML is cut the same way so that
    line numbers still match; None if a problem is outside any list item.
    """
    try:
        return Journey.model_validate(construct(root)), root, []
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
            return Journey.model_validate(construct(checked)), checked, problems
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
        hint = suggest(field, allowed) or (f": use {', '.join(allowed)}" if allowed else "")
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
        return f"unknown step {name!r}{suggest(name, STEP_KINDS) or f': use one of {kinds}'}"
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
