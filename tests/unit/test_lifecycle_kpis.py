"""The lifecycle report's arithmetic: NPS, retention, cohorts, CLV, order figures, CAC and
periods, from plain rows (the database side is tests/test_reports_lifecycle.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from definition.events import checked_properties
from reports.lifecycle import (
    Granularity,
    Purchase,
    Signup,
    acquisition,
    bucket_of,
    cohort_table,
    nps,
    order_figures,
    period,
    retention_of,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"{text}T12:00:00+00:00")


def test_nps_is_promoters_minus_detractors_in_percent() -> None:
    found = nps([10, 9, 9, 8, 7, 6, 3, 0, 10, 10])

    assert (found.responses, found.promoters, found.passives, found.detractors) == (10, 5, 2, 3)
    assert found.score == pytest.approx(20.0)
    assert nps([]).score is None and nps([6, 0]).score == -100.0


def test_a_review_score_is_a_whole_number_from_0_to_10() -> None:
    assert checked_properties("review_submitted", {"score": "9"}) == ({"score": 9}, [])
    for bad in (11, -1, 7.5, "ten", True):
        _, problems = checked_properties("review_submitted", {"score": bad})
        assert [problem.name for problem in problems] == ["score"], bad


def test_acquisition_cost_is_a_declared_number_of_signed_up() -> None:
    assert checked_properties("signed_up", {"acquisition_cost": "12.50"}) == ({"acquisition_cost": 12.5}, [])
    _, problems = checked_properties("signed_up", {"acquisition_cost": -3})
    assert [problem.name for problem in problems] == ["acquisition_cost"]


def test_churn_counts_only_customers_of_the_base_per_journey() -> None:
    at_start = [("lifecycle", "a"), ("lifecycle", "b"), ("lifecycle", "c"), ("lifecycle", "d"), ("other", "a")]
    left = [("lifecycle", "a"), ("lifecycle", "z"), ("other", "b")]

    found = {row.journey_id: row for row in retention_of(at_start, left)}

    assert (found["lifecycle"].base, found["lifecycle"].churned, found["lifecycle"].retained) == (4, 1, 3)
    assert (found["lifecycle"].churn_rate, found["lifecycle"].retention_rate) == (0.25, 0.75)
    assert (found["other"].base, found["other"].churned) == (1, 0)


def test_buckets_are_calendar_months_or_iso_weeks() -> None:
    assert bucket_of(at("2026-03-31"), Granularity.MONTH) == "2026-03"
    assert bucket_of(at("2027-01-01"), Granularity.WEEK) == "2026-W53"  # a Friday of 2026's ISO week 53


def test_month_12_is_outside_the_twelve_month_value_and_before_sign_up_counts_nowhere() -> None:
    signups = {"a": Signup("a", at("2025-01-31"), None), "b": Signup("b", at("2025-01-02"), None)}
    purchases = [
        Purchase("a", at("2025-01-15"), 999.0),  # before signing up
        Purchase("a", at("2025-02-01"), 100.0),  # month 1 (a calendar month on, not 30 days)
        Purchase("a", at("2025-12-31"), 50.0),  # month 11
        Purchase("a", at("2026-01-01"), 25.0),  # month 12
    ]

    (cohort,) = cohort_table(signups, purchases, at("2025-01-01"), datetime(2026, 2, 1, tzinfo=UTC))

    assert (cohort.month, cohort.customers, len(cohort.bought)) == ("2025-01", 2, 13)
    assert cohort.bought[:2] == [0, 1] and cohort.bought[11:] == [1, 1]
    assert cohort.shares[1] == 0.5
    assert (cohort.revenue_to_date, cohort.clv_to_date, cohort.clv_12_months) == (175.0, 87.5, 75.0)


def test_order_figures_of_a_period() -> None:
    purchases = [
        Purchase("a", at("2026-01-01"), 10.0),
        Purchase("a", at("2026-03-05"), 30.0),  # a's second order: 63 days
        Purchase("b", at("2026-03-01"), 60.0),
        Purchase("b", at("2026-03-02"), 90.0),  # b's second order: 1 day
        Purchase("b", at("2026-03-03"), 20.0),
        Purchase("c", at("2026-03-04"), 40.0),
    ]

    orders = order_figures(purchases, at("2026-02-01"), NOW)

    assert (orders.purchases, orders.customers, orders.revenue, orders.average_order_value) == (5, 3, 240.0, 48.0)
    assert (orders.repeat_customers, orders.repeat_purchase_rate) == (1, pytest.approx(1 / 3))
    assert (orders.second_orders, orders.median_days_to_second_order) == (2, 32.0)


def test_cac_divides_the_costs_by_every_customer_acquired() -> None:
    signups = {
        "a": Signup("a", at("2026-03-01"), 50.0),
        "b": Signup("b", at("2026-03-02"), None),
        "c": Signup("c", at("2025-03-02"), 500.0),
    }

    found = acquisition(signups, at("2026-01-01"), NOW)

    assert (found.customers_acquired, found.customers_with_cost, found.total_cost, found.cac) == (2, 1, 50.0, 25.0)
    assert acquisition({"b": signups["b"]}, at("2026-01-01"), NOW).cac is None


def test_a_period_defaults_to_the_year_before_now_and_must_not_be_empty() -> None:
    assert period(None, None, NOW) == (NOW - timedelta(days=365), NOW)
    assert period(datetime(2026, 3, 1), None, NOW) == (datetime(2026, 3, 1, tzinfo=UTC), NOW)
    with pytest.raises(ValueError, match="until: must be after since"):
        period(NOW, NOW, NOW)
    with pytest.raises(ValueError, match="between 1970 and 2200"):
        period(datetime(1, 1, 1), None, NOW)
