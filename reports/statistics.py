"""The statistics of the experiments report: pure functions of counts and sums, no database.

Chosen for small samples and rates near 0, which marketing conversions are:
- a rate's interval is Wilson's score interval (the Wald interval collapses to [0, 0] with no
  conversion and overshoots [0, 1] near the edges);
- the difference of two rates has Newcombe's hybrid score interval (method 10 of Newcombe
  1998, built from the two Wilson intervals), and its p-value is the pooled two-proportion
  z-test — the test every A/B calculator and `statsmodels.proportions_ztest` compute;
- the difference of two means (revenue per customer) has Welch's standard error with the
  normal quantile (not Student's t): customer counts are in the hundreds at least.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from pydantic import BaseModel

_NORMAL = NormalDist()


class Interval(BaseModel):
    low: float
    high: float


def z_for(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 for 0.95."""
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval of successes / trials; [0, 1] when there were no trials."""
    if trials == 0:
        return Interval(low=0.0, high=1.0)
    z = z_for(confidence)
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(low=max(0.0, centre - half), high=min(1.0, centre + half))


def difference_interval(
    successes: int, trials: int, base_successes: int, base_trials: int, confidence: float = 0.95
) -> Interval:
    """Newcombe's hybrid score interval of rate - base rate."""
    if trials == 0 or base_trials == 0:
        return Interval(low=-1.0, high=1.0)
    rate, base = successes / trials, base_successes / base_trials
    first, second = wilson(successes, trials, confidence), wilson(base_successes, base_trials, confidence)
    difference = rate - base
    below = math.sqrt((rate - first.low) ** 2 + (second.high - base) ** 2)
    above = math.sqrt((first.high - rate) ** 2 + (base - second.low) ** 2)
    return Interval(low=difference - below, high=difference + above)


def two_proportion_p_value(
    successes: int, trials: int, base_successes: int, base_trials: int
) -> float | None:
    """Two-sided p-value of the pooled z-test that both rates are equal; None when it cannot
    say (an empty group, or no variation at all: nobody or everybody converted)."""
    if trials == 0 or base_trials == 0:
        return None
    pooled = (successes + base_successes) / (trials + base_trials)
    variance = pooled * (1 - pooled) * (1 / trials + 1 / base_trials)
    if variance == 0:
        return None
    z = (successes / trials - base_successes / base_trials) / math.sqrt(variance)
    return 2 * (1 - _NORMAL.cdf(abs(z)))


class MeanSample(BaseModel):
    """A group's values as sums, so SQL can aggregate them: n, Σx and Σx²."""

    count: int
    total: float
    total_squares: float

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (n - 1 in the denominator)."""
        if self.count < 2:
            return 0.0
        return max(0.0, (self.total_squares - self.total * self.total / self.count) / (self.count - 1))


def mean_difference_interval(
    sample: MeanSample, base: MeanSample, confidence: float = 0.95
) -> Interval | None:
    """mean - base mean ± z · Welch's standard error; None with fewer than two in a group."""
    if sample.count < 2 or base.count < 2:
        return None
    error = math.sqrt(sample.variance / sample.count + base.variance / base.count)
    difference = sample.mean - base.mean
    z = z_for(confidence)
    return Interval(low=difference - z * error, high=difference + z * error)
