"""YAML as journey files need it: line numbers kept, and `on:` left a string.

PyYAML follows YAML 1.1, where `on`, `off`, `yes` and `no` are booleans; a transition's
`on: purchase` would become `True: purchase`. Only `true`/`false` are booleans here.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class JourneyYamlLoader(yaml.SafeLoader):
    pass


JourneyYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
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
        child = _child(node, element)
        if child is None:
            continue
        node = child
        line = child.start_mark.line + 1
    return line


def key_line(root: yaml.Node | None, path: tuple[Any, ...]) -> int:
    """1-based line of the mapping key that ends `path` (a stage's name, say)."""
    parent = root
    for element in path[:-1]:
        parent = _child(parent, element) or parent
    if isinstance(parent, yaml.MappingNode):
        for key, _ in parent.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(path[-1]):
                return key.start_mark.line + 1
    return line_of(root, path)


def _child(node: yaml.Node | None, element: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(element):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(element, int) and 0 <= element < len(node.value):
        return node.value[element]
    return None
