"""Conditions: Jinja2 expressions evaluated in its sandbox, never Python `eval`.

`metrics.orders_365d >= 5 or metrics.spent_365d >= 2000`,
`event.properties.category == 'shoes'`, `previous_stage == 'inactive'`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from definition.metrics import METRIC_NAMES

CONDITION_NAMES = frozenset({"metrics", "event", "stage", "previous_stage", "experiments"})
_environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined)


class ConditionError(ValueError):
    pass


def problems(expression: str) -> list[str]:
    """What is wrong with a condition, in words for the journey's author; empty if fine."""
    try:
        tree = _environment.parse("{{ " + expression + " }}")
    except TemplateSyntaxError as error:
        return [f"condition {expression!r} is not valid: {error.message}"]
    found = []
    for name in tree.find_all(nodes.Name):
        if name.name not in CONDITION_NAMES:
            found.append(
                f"condition {expression!r} uses unknown name {name.name!r}: "
                f"use {', '.join(sorted(CONDITION_NAMES))}"
            )
    for attribute in tree.find_all(nodes.Getattr):
        if isinstance(attribute.node, nodes.Name) and attribute.node.name == "metrics":
            if attribute.attr not in METRIC_NAMES:
                found.append(
                    f"condition {expression!r} uses unknown metric {attribute.attr!r}: "
                    f"use {', '.join(sorted(METRIC_NAMES))}"
                )
    return found


@lru_cache(maxsize=512)
def _compiled(expression: str) -> Callable[..., Any]:
    return _environment.compile_expression(expression, undefined_to_none=False)


def evaluate(expression: str, context: dict[str, Any]) -> bool:
    """Evaluate; a missing event property counts as false rather than stopping a journey."""
    try:
        return bool(_compiled(expression)(**context))
    except UndefinedError:
        return False
    except Exception as error:  # a type error in a marketer's condition must not crash the workflow
        raise ConditionError(f"condition {expression!r} failed: {error}") from error
