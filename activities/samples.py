"""The customer and the event a preview or a test send renders with, read from YAML files
that replace the sample's (`--customer FILE.yaml`, `--event FILE.yaml`).

A file holds the fields templates see (definition/context.py's CustomerView and EventView),
so it can hold nothing a template could not use; every problem is `file:line: field: message`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast, get_type_hints

import yaml
from pydantic import ValidationError, create_model

from definition import templates
from definition.context import CustomerView, EventView
from definition.identifiers import id_problem
from definition.problems import Problem, ProblemsForPeople
from definition.yaml_problems import yaml_problem
from definition.yaml_source import compose_yaml, construct, line_of

SAMPLE_CUSTOMER_ID = "sample-customer"
"""Whom a test send is recorded for when the customer file names no `id`."""


class SampleProblems(ProblemsForPeople):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def load_customer(path: Path) -> tuple[str, CustomerView]:
    """(customer id, the customer as templates see them): the file's fields over the sample's.
    `id` is whom a test send is recorded for (the ledger row; no template sees it)."""
    data, root = _mapping(path)
    customer_id = data.pop("id", SAMPLE_CUSTOMER_ID)
    problem = id_problem(customer_id)
    if problem is not None:
        raise SampleProblems([Problem(path, line_of(root, ("id",)), f"id: {problem}")])
    sample = templates.sample_context()["customer"]
    view = _view(path, root, CustomerView, "customer", {**sample, **data}, also=("id",))
    return customer_id, cast(CustomerView, view)


def load_event(path: Path) -> EventView:
    """The event of the stage, in place of the sample's purchase; `properties` may be left out."""
    data, root = _mapping(path)
    return cast(EventView, _view(path, root, EventView, "event", {"properties": {}, **data}))


def _mapping(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SampleProblems([Problem(path, 0, f"cannot read the file: {error}")]) from None
    try:
        root = compose_yaml(text)
        data = construct(root)
    except yaml.YAMLError as error:
        raise SampleProblems([yaml_problem(path, text, error)]) from None
    if not isinstance(data, dict):
        raise SampleProblems([Problem(path, 1, "expected a mapping of fields (`name: value` lines)")])
    return data, root


def _view(
    path: Path,
    root: yaml.Node | None,
    view: type,
    kind: str,
    data: Mapping[str, Any],
    also: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`data` as `view`; a key the view does not declare is a problem (pydantic would drop it)."""
    hints: dict[str, Any] = get_type_hints(view)
    fields = list(hints)
    allowed = ", ".join([*fields, *also])
    problems = [
        Problem(path, line_of(root, (key,)), f"{key}: unknown field; a {kind} file has {allowed}")
        for key in data
        if key not in fields
    ]
    # A model made from the view's own hints: pydantic validates no typing.TypedDict on 3.11.
    required: dict[str, Any] = {name: (hint, ...) for name, hint in hints.items()}
    model = create_model(f"{kind.title()}File", **required)
    try:
        validated = model.model_validate(dict(data)).model_dump()
    except ValidationError as error:
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or kind
            problems.append(Problem(path, line_of(root, tuple(item["loc"])), f"{field}: {item['msg']}"))
    if problems:
        raise SampleProblems(sorted(problems, key=lambda problem: problem.line))
    return validated
