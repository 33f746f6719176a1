"""YAML as journey files need it: line numbers kept, `on:` left a string, `10:00` a time.

PyYAML follows YAML 1.1, where `on`, `off`, `yes` and `no` are booleans; a transition's
`on: purchase` would become `True: purchase`. Only `true`/`false` are booleans here.
YAML 1.1 also reads `10:00` as the base-60 number 600, which pydantic would take as
00:10; as in YAML 1.2, numbers with a colon stay text, so `until: 10:00` means ten o'clock.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class JourneyYamlLoader(yaml.SafeLoader):
    pass


_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _without_base_60(tag: str, regexp: re.Pattern[str]) -> tuple[str, re.Pattern[str]]:
    if tag in _NUMBERS:
        return tag, re.compile(r"(?!.*:)" + regexp.pattern, regexp.flags)
    return tag, regexp


JourneyYamlLoader.yaml_implicit_resolvers = {
    first: [_without_base_60(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
JourneyYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=JourneyYamlLoader)  # noqa: S506 - a SafeLoader subclass


def compose_yaml(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=JourneyYamlLoader)  # noqa: S506 - a SafeLoader subclass


def line_of(root: yaml.Node | None, path: tuple[Any, ...]) -> int:
    """1-based line of the deepest node of `root` reached by `path`.

    Path elements that are not keys in the YAML (pydantic's union tags, for instance)
    are skipped, so a validation error's location maps to the closest written line.
    """
    node = root
    line = (node.start_mark.line + 1) if node is not None else 1
    for element in path:
        child = child_node(node, element)
        if child is None:
            continue
        node = child
        line = child.start_mark.line + 1
    return line


def key_line(root: yaml.Node | None, path: tuple[Any, ...]) -> int:
    """1-based line of the mapping key that ends `path` (a stage's name, say)."""
    parent = root
    for element in path[:-1]:
        parent = child_node(parent, element) or parent
    if isinstance(parent, yaml.MappingNode):
        for key, _ in parent.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(path[-1]):
                return key.start_mark.line + 1
    return line_of(root, path)


def child_node(node: yaml.Node | None, element: Any) -> yaml.Node | None:
    """The value under a mapping key, or a sequence's item; None if `node` has no such child."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(element):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(element, int) and 0 <= element < len(node.value):
        return node.value[element]
    return None
