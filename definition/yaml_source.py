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


MAX_NODES = 100_000
"""Values in one journey file, with every `*alias` counted where it is used: a few lines of
aliases can otherwise stand for billions of values that validation would walk."""
MAX_NUMBER_LENGTH = 100
"""Characters of a number: Python refuses to read integers past 4,300 digits."""


def oversized(root: yaml.Node | None) -> tuple[int, str] | None:
    """(line, message) if the document is too large to read, once aliases are expanded."""
    if root is None:
        return None
    expanded: dict[int, int] = {}
    # Depth-first, children before their parent; an alias of an ancestor (a cycle) counts once.
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while pending:
        node, children_done = pending.pop()
        if id(node) in expanded:
            continue
        children = _children(node)
        if not children_done:
            if isinstance(node, yaml.ScalarNode):
                if node.tag.endswith((":int", ":float")) and len(node.value) > MAX_NUMBER_LENGTH:
                    return node.start_mark.line + 1, f"number too long: at most {MAX_NUMBER_LENGTH} characters"
                expanded[id(node)] = 1
                continue
            open_nodes.add(id(node))
            pending.append((node, True))
            pending.extend((child, False) for child in children if id(child) not in open_nodes)
            continue
        open_nodes.discard(id(node))
        expanded[id(node)] = 1 + sum(expanded.get(id(child), 1) for child in children)
        if expanded[id(node)] > MAX_NODES:
            return (
                node.start_mark.line + 1,
                f"the file stands for more than {MAX_NODES:,} values once its *aliases are expanded",
            )
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=JourneyYamlLoader)  # noqa: S506 - a SafeLoader subclass


def compose_yaml(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=JourneyYamlLoader)  # noqa: S506 - a SafeLoader subclass


def construct(node: yaml.Node | None) -> Any:
    """Python data of a composed document: parsed once, so the data and its lines agree."""
    if node is None:
        return None
    loader = JourneyYamlLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


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
