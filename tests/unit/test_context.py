"""The validator's knowledge of what templates and conditions see, from one declaration."""

from __future__ import annotations

import pytest

from definition import conditions, templates
from definition.context import ConditionContext, TemplateContext, known_fields, names, unknown_fields
from definition.metrics import METRIC_NAMES
from definition.templates import environment
from tests.unit.kit import Drive, at, one_stage
from workflows.machine import event_context

pytestmark = pytest.mark.unit


def found(source: str) -> list[str]:
    return [
        f"{unknown.line}: {unknown}"
        for unknown in unknown_fields(environment({}).parse(source), TemplateContext)
    ]


def test_a_misspelt_customer_field_is_named_with_the_closest_field() -> None:
    assert found("Hi\n{{ customer.frist_name }}") == [
        "2: customer has no field 'frist_name'; did you mean 'first_name'?"
    ]


def test_item_access_is_checked_like_attribute_access() -> None:
    assert found("{{ shop['nmae'] }}") == ["1: shop has no field 'nmae'; did you mean 'name'?"]


def test_a_field_with_nothing_close_says_only_that_it_is_missing() -> None:
    assert found("{{ links.zzz }}") == ["1: links has no field 'zzz'"]


def test_the_same_mistake_twice_on_a_line_is_reported_once_and_each_line_once() -> None:
    assert found("{{ customer.x }}{{ customer.x }}\n{{ customer.x }}") == [
        "1: customer has no field 'x'",
        "2: customer has no field 'x'",
    ]


def test_event_properties_are_open_and_metrics_are_the_metric_names() -> None:
    assert found("{{ event.properties.anything }}{{ metrics.orders }}{{ event.type }}") == []
    assert found("{{ metrics.ordrs }}") == ["1: metrics has no field 'ordrs'; did you mean 'orders'?"]


def test_methods_of_dicts_and_strings_and_names_the_template_assigns_are_not_fields() -> None:
    assert found("{{ customer.get('first_name') }}{{ discount_code.lower() }}") == []
    assert found("{% set customer = {'vip': 1} %}{{ customer.vip }}") == []
    assert found("{% macro hi(shop) %}{{ shop.owner }}{% endmacro %}") == []
    assert found("{% for links in [1] %}{{ links.real }}{% endfor %}") == []


def test_the_declared_contexts_are_what_the_samples_and_the_machine_hold() -> None:
    template_sample = templates.sample_context()
    condition_sample = conditions.sample_context()
    assert set(template_sample) == names(TemplateContext) == templates.TEMPLATE_NAMES
    assert set(condition_sample) == names(ConditionContext) == conditions.CONDITION_NAMES
    fields = known_fields(TemplateContext)
    for name in ("customer", "shop", "links", "event"):
        assert set(template_sample[name]) == fields[name], name  # type: ignore[literal-required]
    assert fields["metrics"] == METRIC_NAMES == set(condition_sample["metrics"])
    assert set(event_context(None)) == fields["event"]
    assert "experiments" not in known_fields(ConditionContext), "experiment names are the journey's"


def test_a_condition_names_a_missing_event_field_and_a_metric_with_a_suggestion() -> None:
    assert conditions.problems("event.typ == 'purchase'") == [
        "condition \"event.typ == 'purchase'\": event has no field 'typ'; did you mean 'type'?"
    ]
    (metric,) = conditions.problems("metrics.ordrs > 0")
    assert metric.startswith(
        "condition 'metrics.ordrs > 0' uses unknown metric 'ordrs'; did you mean 'orders'?"
    )
    assert conditions.problems("event.properties.category == 'shoes' and experiments.subject == 'a'") == []


def test_the_machine_evaluates_conditions_over_the_declared_context() -> None:
    drive = Drive(one_stage([{"wait": "1d"}]))

    context = drive.machine._condition_context(None, at("2026-03-02T10:00:00+01:00"))

    assert set(context) == names(ConditionContext)
    assert set(context["metrics"]) == known_fields(ConditionContext)["metrics"]
    assert set(context["event"]) == known_fields(ConditionContext)["event"]
