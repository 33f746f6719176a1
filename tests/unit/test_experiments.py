"""Splits ask for their arm once, and the report's statistics, against statsmodels and scipy."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from definition.holdout import in_global_holdout
from definition.model import SplitSpec
from definition.program import assign_arm
from reports.statistics import (
    MeanSample,
    difference_interval,
    mean_difference_interval,
    two_proportion_p_value,
    wilson,
)
from tests.unit.kit import Drive, one_stage
from workflows.interface import ArmAssigned, SupportKind
from workflows.machine import RECORD_EXPERIMENT_ASSIGNMENTS

pytestmark = pytest.mark.unit


def email(template: str) -> dict[str, object]:
    return {"send": {"channel": "email", "template": template}}


SPLIT = {
    "name": "subject",
    "arms": [
        {"name": "a", "weight": 50, "flow": [email("arm_a")]},
        {"name": "b", "weight": 50, "flow": [email("arm_b")]},
    ],
    "holdout": 10,
    "winner": {"min_customers": 3, "confidence": 0.9, "window": "3d"},
}


def test_a_split_asks_for_the_arm_once_with_the_hash_and_the_rule_and_keeps_the_answer() -> None:
    drive = Drive(one_stage([{"split": SPLIT}, email("after")]), customer_id="c-7")
    hashed = assign_arm("c-7", "steps", SplitSpec.model_validate(SPLIT))

    drive.event("signed_up")
    drive.support(SupportKind.MOVE_TO, stage="one")

    [request] = drive.assignments
    assert (request.journey_id, request.customer_id, request.instance, request.split) == (
        "steps",
        "c-7",
        "run1",
        "subject",
    )
    assert request.arms == ["a", "b"] and request.hashed_arm == hashed and request.at == drive.now
    assert request.winner is not None and request.winner.min_customers == 3
    assert drive.state.experiments == {"subject": hashed}


def test_the_window_is_the_rules_else_the_journeys_conversion_window_else_seven_days() -> None:
    without_window = {**SPLIT, "winner": {"min_customers": 3}}
    windows = []
    for split, fields in ((SPLIT, {}), (without_window, {"conversion_window": "5d"}), (without_window, {})):
        drive = Drive(one_stage([{"split": split}], **fields), customer_id="c-7")
        drive.event("signed_up")
        windows.append(drive.assignments[0].window)

    assert windows == [timedelta(days=3), timedelta(days=5), timedelta(days=7)]


def test_the_winner_answered_by_the_activity_overrides_the_hash() -> None:
    drive = Drive(one_stage([{"split": SPLIT}, email("after")]), customer_id="c-7")
    drive.assign = lambda request: ArmAssigned(arm="b", by_winner=request.hashed_arm != "b")

    drive.event("signed_up")

    assert drive.state.experiments == {"subject": "b"}
    assert drive.templates() == ["arm_b", "after"]


def test_an_old_history_keeps_the_hashed_arm_without_asking() -> None:
    drive = Drive(
        one_stage([{"split": SPLIT}, email("after")]),
        customer_id="c-7",
        patched=lambda patch_id: not patch_id.startswith(RECORD_EXPERIMENT_ASSIGNMENTS),
    )

    drive.event("signed_up")

    assert drive.assignments == []
    assert drive.state.experiments == {"subject": assign_arm("c-7", "steps", SplitSpec.model_validate(SPLIT))}


def test_the_global_holdout_is_a_sticky_share_of_customers() -> None:
    held = [n for n in range(10_000) if in_global_holdout(f"c-{n}", 10)]

    assert 900 < len(held) < 1100
    assert held == [n for n in range(10_000) if in_global_holdout(f"c-{n}", 10)]
    assert not any(in_global_holdout(f"c-{n}", 0) for n in range(1000))
    assert set(held) <= {n for n in range(10_000) if in_global_holdout(f"c-{n}", 20)}


# --- the statistics, checked against the libraries ------------------------------------------

COUNTS = [(0, 10), (1, 40), (12, 250), (57, 480), (30, 30), (499, 1000)]


@pytest.mark.parametrize(("successes", "trials"), COUNTS)
def test_wilson_interval_matches_statsmodels(successes: int, trials: int) -> None:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    interval = wilson(successes, trials)

    assert interval.low == pytest.approx(low, abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)


PAIRS = [((57, 480), (40, 500)), ((12, 250), (0, 240)), ((56, 70), (48, 80)), ((9, 10), (3, 10))]


@pytest.mark.parametrize(("arm", "base"), PAIRS)
def test_difference_interval_is_newcombes_as_statsmodels_computes_it(
    arm: tuple[int, int], base: tuple[int, int]
) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(*arm, *base, method="newcomb", compare="diff", alpha=0.05)
    interval = difference_interval(*arm, *base)

    assert interval.low == pytest.approx(low, abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)


def test_newcombes_worked_example_56_of_70_against_48_of_80() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, table II example (a): 0.0524 to 0.3339.
    interval = difference_interval(56, 70, 48, 80)

    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0524, 0.3339)


@pytest.mark.parametrize(("arm", "base"), PAIRS)
def test_two_proportion_p_value_matches_statsmodels_ztest(
    arm: tuple[int, int], base: tuple[int, int]
) -> None:
    from statsmodels.stats.proportion import proportions_ztest

    _, p_value = proportions_ztest([arm[0], base[0]], [arm[1], base[1]])

    assert two_proportion_p_value(*arm, *base) == pytest.approx(p_value, rel=1e-9)


def test_p_value_is_unknown_when_nobody_or_everybody_converted() -> None:
    assert two_proportion_p_value(0, 10, 0, 12) is None
    assert two_proportion_p_value(10, 10, 12, 12) is None
    assert two_proportion_p_value(1, 10, 0, 0) is None


def test_mean_difference_interval_is_welchs_standard_error_with_the_normal_quantile() -> None:
    from scipy import stats

    treated = [0.0] * 40 + [120.0, 80.5, 300.0, 45.0, 99.99] * 4
    control = [0.0] * 9 + [150.0, 20.0, 60.0]
    expected_error = math.sqrt(stats.tvar(treated) / len(treated) + stats.tvar(control) / len(control))
    difference = sum(treated) / len(treated) - sum(control) / len(control)
    z = stats.norm.ppf(0.975)

    interval = mean_difference_interval(_sample(treated), _sample(control))

    assert interval is not None
    assert interval.low == pytest.approx(difference - z * expected_error, rel=1e-9)
    assert interval.high == pytest.approx(difference + z * expected_error, rel=1e-9)


def _sample(values: list[float]) -> MeanSample:
    return MeanSample(count=len(values), total=sum(values), total_squares=sum(v * v for v in values))


def test_a_winner_rule_needs_two_arms_to_compare() -> None:
    one_arm = {"name": "solo", "arms": [{"name": "a", "weight": 1}], "winner": {"min_customers": 10}}

    with pytest.raises(ValueError, match="two arms or more"):
        SplitSpec.model_validate(one_arm)
