"""What templates and conditions can see: one declaration of each context, read by the
validator (which attributes exist) and typed for the code that builds the real contexts.

A field declared `Open` (a dict whose keys the journey's events or experiments decide, such
as `event.properties`) accepts any attribute: only the shop knows which properties it sends.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, get_args, get_origin, get_type_hints, is_typeddict

from jinja2 import nodes

from definition.metrics import METRIC_NAMES


@dataclass(frozen=True)
class Fields:
    """The keys a dict of the context holds, when they are not a TypedDict's own."""

    names: frozenset[str]


Open = dict[str, Any]
"""A dict whose keys are not known in advance: any attribute is accepted."""


class CustomerView(TypedDict):
    """Never more than the customer's name, locale and zone: templates are authored by
    marketers and rendered with no other personal data."""

    first_name: str | None
    locale: str
    timezone: str


class EventView(TypedDict):
    """The event that entered the stage (the purchase, say); its properties are the shop's."""

    type: str
    properties: Open


class ShopView(TypedDict):
    name: str
    url: str
    currency: str


class LinksView(TypedDict):
    unsubscribe: str
    preferences: str


MetricsView = Annotated[dict[str, Any], Fields(METRIC_NAMES)]
"""definition.metrics.Metrics.view: its keys are the metric names."""


class TemplateContext(TypedDict):
    customer: CustomerView
    metrics: MetricsView
    event: EventView
    discount_code: str
    """A unique single-use code for this message."""
    shop: ShopView
    links: LinksView


class ConditionContext(TypedDict):
    metrics: MetricsView
    event: EventView
    stage: str | None
    previous_stage: str | None
    experiments: Open
    """Experiment name → the arm this customer was given."""


def names(context: type) -> frozenset[str]:
    """The variables a context declares."""
    return frozenset(get_type_hints(context))


def known_fields(context: type) -> dict[str, frozenset[str]]:
    """Variable → its fields, for every variable whose fields are known (not open, not a
    string or a number, whose own methods are the language's)."""
    known = {}
    for name, hint in get_type_hints(context, include_extras=True).items():
        if is_typeddict(hint):
            known[name] = frozenset(get_type_hints(hint))
        elif get_origin(hint) is Annotated:
            declared = [extra for extra in get_args(hint)[1:] if isinstance(extra, Fields)]
            if declared:
                known[name] = declared[0].names
    return known


_DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))
"""`customer.get('first_name')`, `metrics.items()`: Jinja finds a dict's methods first."""


@dataclass(frozen=True)
class UnknownField:
    line: int
    variable: str
    field: str
    close: str | None

    def __str__(self) -> str:
        hint = f"; did you mean {self.close!r}?" if self.close else ""
        return f"{self.variable} has no field {self.field!r}{hint}"


def unknown_fields(tree: nodes.Node, context: type) -> list[UnknownField]:
    """`customer.frist_name` or `customer['frist_name']` where `customer` is the context's,
    once per line and field, in the order they appear."""
    known = known_fields(context)
    # A name the template assigns, loops over or takes as a macro's parameter is its own.
    own = {name.name for name in tree.find_all(nodes.Name) if name.ctx != "load"}
    found: dict[tuple[int, str, str], UnknownField] = {}
    for line, variable, field in _accesses(tree):
        if variable in own or variable not in known or field in known[variable]:
            continue
        if field in _DICT_METHODS:
            continue
        close = difflib.get_close_matches(field, sorted(known[variable]), n=1)
        found.setdefault(
            (line, variable, field), UnknownField(line, variable, field, close[0] if close else None)
        )
    return sorted(found.values(), key=lambda unknown: unknown.line)


def _accesses(tree: nodes.Node) -> Iterator[tuple[int, str, str]]:
    for attribute in tree.find_all(nodes.Getattr):
        if isinstance(attribute.node, nodes.Name) and attribute.node.ctx == "load":
            yield attribute.lineno, attribute.node.name, attribute.attr
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.ctx == "load"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            yield item.lineno, item.node.name, item.arg.value
