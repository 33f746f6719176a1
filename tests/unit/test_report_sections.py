"""The report page's experiment section: each arm's interval drawn, the test's p-value and the
programme's incremental revenue written beside it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.report_charts import _experiments, step_funnel
from reports.experiments import ArmResult, ExperimentsReport, GroupRevenue, ProgrammeResult, SplitResult
from reports.funnel import StepFunnel
from reports.statistics import Interval

pytestmark = pytest.mark.unit


def arm(name: str, customers: int, converted: int, p_value: float | None) -> ArmResult:
    rate = converted / customers
    return ArmResult(
        arm=name,
        customers=customers,
        converted=converted,
        conversion_rate=rate,
        conversion_interval=Interval(low=rate / 2, high=rate * 1.5),
        revenue=converted * 100.0,
        revenue_per_customer=converted * 100.0 / customers,
        p_value=p_value,
    )


def test_each_arm_is_drawn_with_its_interval_and_the_programme_line_is_written() -> None:
    split = SplitResult(
        journey_id="lifecycle",
        split="subject_test",
        window="7d",
        baseline="holdout",
        arms=[arm("holdout", 100, 5, None), arm("a", 400, 40, 0.042)],
    )
    group = GroupRevenue(customers=10, buyers=1, revenue=100.0, revenue_per_customer=10.0)
    programme = ProgrammeResult(
        holdout_percent=5,
        since=None,
        until=datetime(2026, 12, 1, tzinfo=UTC),
        treated=group.model_copy(update={"revenue_per_customer": 14.5}),
        control=group,
        incremental_revenue_per_customer=4.5,
        interval=Interval(low=-1.25, high=10.25),
    )

    section = _experiments(ExperimentsReport(splits=[split], programme=programme), "PLN")

    (chart,) = section.charts
    assert "lifecycle · subject_test: conversion within 7d" in chart
    assert "a (400)" in chart and "10.0% (5.0%–15.0%) · p 0.042 vs holdout · 10.00 PLN/customer" in chart
    assert chart.count('class="interval"') == 2
    assert section.notes == [
        "The whole programme against the 5 % control group: +4.50 PLN per customer (-1.25 to +10.25)"
    ]


def test_a_steps_funnel_gives_each_level_its_count_and_share_of_the_messages_sent() -> None:
    step = StepFunnel(
        stage="prospect",
        step="prospect/0",
        template="welcome",
        channel="email",
        sent=200,
        delivered=190,
        opened=80,
        clicked=20,
        converted=5,
        revenue=1250.0,
    )

    funnel = step_funnel(step, "PLN")

    assert funnel.label == "prospect · welcome (email) — 5 converted, 1,250.00 PLN"
    assert [(level.label, level.value, level.note) for level in funnel.levels] == [
        ("sent", 200, "200 sent"),
        ("delivered", 190, "190 delivered · 95.0% of sent"),
        ("opened", 80, "80 opened · 40.0% of sent"),
        ("clicked", 20, "20 clicked · 10.0% of sent"),
        ("converted", 5, "5 converted · 2.5% of sent"),
    ]
    not_sent = step.model_copy(update={"no_consent": 3, "failed": {"400": 1}})
    assert step_funnel(not_sent, "PLN").label.endswith(
        " — 5 converted, 1,250.00 PLN · not sent: 3 no consent, 1 failed: 400"
    )
