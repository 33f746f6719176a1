"""Conditions: Jinja2 expressions evaluated in the bounded sandbox, never Python `eval`.

`metrics.orders_365d >= 5 or metrics.spent_365d >= 2000`,
`event.properties.category == 'shoes'`, `previous_stage == 'inactive'`.

A condition runs inside the workflow, so its bound is a work budget (operations and the
size of what they make), never a clock: a replay spends exactly what the first run spent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import UndefinedError

from definition.context import ConditionContext, names, unknown_fields
from definition.metrics import METRIC_NAMES, Metrics
from definition.sandbox import BoundedEnvironment, Budget, LimitExceeded, spending

CONDITION_NAMES = names(ConditionContext)
MAX_LENGTH = 1_000
"""Characters of one condition: a rule a marketer reads, not a program."""
WORK = 100_000
"""Operations (and characters they make) one evaluation may spend."""
_environment = BoundedEnvironment(undefined=StrictUndefined)


class ConditionError(ValueError):
    pass


def problems(expression: str) -> list[str]:
    """What is wrong with a condition, in words for the journey's author; empty if fine."""
    if len(expression) > MAX_LENGTH:
        return [f"condition is {len(expression):,} characters long: at most {MAX_LENGTH:,}"]
    try:
        tree = _environment.parse("{{ " + expression + " }}")
    except TemplateSyntaxError as error:
        return [f"condition {expression!r} is not valid: {error.message}"]
    except (RecursionError, MemoryError):
        return [f"condition {expression!r} is nested too deeply"]
    except ValueError as error:  # an integer literal past Python's 4,300 digits
        return [f"condition {expression!r} is not valid: {error}"]
    found = []
    for name in tree.find_all(nodes.Name):
        if name.name not in CONDITION_NAMES:
            found.append(
                f"condition {expression!r} uses unknown name {name.name!r}: "
                f"use {', '.join(sorted(CONDITION_NAMES))}"
            )
    for unknown in unknown_fields(tree, ConditionContext):
        if unknown.variable == "metrics":
            hint = f"; did you mean {unknown.close!r}?" if unknown.close else ""
            found.append(
                f"condition {expression!r} uses unknown metric {unknown.field!r}{hint} "
                f"(use {', '.join(sorted(METRIC_NAMES))})"
            )
        else:
            found.append(f"condition {expression!r}: {unknown}")
    if found:
        return found
    bound = _past_a_bound(expression, tree)
    return [f"condition {expression!r} {bound}"] if bound else []


def _past_a_bound(expression: str, tree: nodes.Template) -> str | None:
    """How the condition goes past a bound: in a part that is the same for every customer
    (`9**(9**8)`, even behind `and`), or for a sample customer; None if it does not."""
    for part in constant_parts(tree):
        template = nodes.Template([nodes.Output([copy.deepcopy(part)])], lineno=1)
        try:
            with spending(Budget(work=WORK)):
                _environment.from_string(template).render()
        except LimitExceeded as error:
            return f"goes past a limit: {error}"
        except Exception:  # noqa: S112 - a constant part that fails is found when it runs
            continue
    try:
        evaluate(expression, sample_context())
    except ConditionError as error:
        if isinstance(error.__cause__, LimitExceeded):
            return f"goes past a limit: {error.__cause__}"
    return None


def constant_parts(tree: nodes.Node) -> Iterator[nodes.Expr]:
    """The largest expressions that use no variable: what Jinja would fold while compiling."""
    for child in tree.iter_child_nodes():
        if isinstance(child, nodes.Expr) and not isinstance(child, nodes.Literal) and _constant(child):
            yield child
        else:
            yield from constant_parts(child)


def _constant(node: nodes.Node) -> bool:
    if isinstance(node, (nodes.Name, nodes.ContextReference, nodes.EnvironmentAttribute)):
        return False
    return all(_constant(child) for child in node.iter_child_nodes())


def sample_context() -> ConditionContext:
    """A returning customer who just bought shoes: what validation evaluates conditions with."""
    now = datetime(2026, 3, 2, 10, 0)
    metrics = Metrics()
    metrics.record_purchase(now - timedelta(days=40), 250.0, "shoes")
    metrics.record_purchase(now, 120.0, "shoes")
    return {
        "metrics": metrics.view(now),
        "event": {
            "type": "purchase",
            "properties": {"order_id": "o-1", "amount": 120.0, "category": "shoes"},
        },
        "stage": "active",
        "previous_stage": "new",
        "experiments": {},
    }


@lru_cache(maxsize=512)
def _compiled(expression: str) -> Callable[..., Any]:
    if len(expression) > MAX_LENGTH:
        raise LimitExceeded(f"condition longer than {MAX_LENGTH:,} characters")
    return _environment.compile_expression(expression, undefined_to_none=False)


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    """Evaluate; a missing event property counts as false rather than stopping a journey."""
    try:
        # Compiled outside the budget: it is cached, so a replay may not compile again.
        compiled = _compiled(expression)
        with spending(Budget(work=WORK)):
            return bool(compiled(**context))
    except UndefinedError:
        return False
    except Exception as error:  # a type error in a marketer's condition must not crash the workflow
        raise ConditionError(f"condition {expression!r} failed: {error}") from error


_METRIC_WORDS = {
    "orders": "orders",
    "orders_365d": "orders in the last 365 days",
    "spent_365d": "spent in the last 365 days",
    "total_spent": "spent in all",
    "points": "points",
    "days_since_last_purchase": "days since the last purchase",
    "average_order_value": "the average order",
    "emails_opened": "emails opened",
    "emails_clicked": "emails clicked",
    "last_category": "the last category bought",
    "favourite_categories": "the favourite categories",
}
_OPERATOR_WORDS = {
    "eq": "is",
    "ne": "is not",
    "gt": "is more than",
    "gteq": "is at least",
    "lt": "is less than",
    "lteq": "is at most",
    "in": "is one of",
    "notin": "is none of",
}
_NAME_WORDS = {"previous_stage": "the previous stage", "stage": "the stage"}


def in_words(expression: str) -> str:
    """A condition as support reads it: `orders in the last 365 days is at least 5 or …`. What has
    no words here (arithmetic, filters, tests) is shown as written, whole."""
    try:
        tree = _environment.parse("{{ " + expression + " }}")
        (output,) = tree.body
        assert isinstance(output, nodes.Output)
        (node,) = output.nodes
        return _words(node)
    except Exception:  # anything unusual reads best as the marketer wrote it
        return expression


def _words(node: nodes.Node) -> str:
    match node:
        case nodes.Or():
            return f"{_words(node.left)} or {_words(node.right)}"
        case nodes.And():
            return f"{_words(node.left)} and {_words(node.right)}"
        case nodes.Not():
            return f"not ({_words(node.node)})"
        case nodes.Compare() if len(node.ops) == 1:
            (operand,) = node.ops
            return f"{_words(node.expr)} {_OPERATOR_WORDS[operand.op]} {_words(operand.expr)}"
        case nodes.Getattr() if isinstance(node.node, nodes.Name) and node.node.name == "metrics":
            return _METRIC_WORDS[node.attr]
        case nodes.Getattr() if isinstance(node.node, nodes.Getattr) and node.node.attr == "properties":
            return f"the event's {node.attr}"
        case nodes.Name() if node.name in _NAME_WORDS:
            return _NAME_WORDS[node.name]
        case nodes.Const() if isinstance(node.value, str):
            return repr(node.value)
        case nodes.Const() if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return f"{node.value:g}"
        case nodes.List() | nodes.Tuple():
            return ", ".join(_words(item) for item in node.items)
    raise ValueError(f"no words for {type(node).__name__}")
