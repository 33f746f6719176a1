"""The experiments report: each split's arms compared, and the whole programme against the
global control group — queries over experiment_assignments, events and customers.

A customer's conversion in a split is a purchase within the split's window after their
assignment (journey time; `definition.model.split_window`: the winner rule's `window`, else
the journey's `conversion_window`, else 7 days); the holdout is measured the same way from its own assignments. Revenue per
customer is the amount of those purchases over the arm's customers. A "customer" of an arm
is one assignment: a customer who enters the journey again and reaches the split again
counts again (the hash gives them the same arm).

The winner rule is decided here too (`decide_winner`), by the same counts, so the report
shows exactly the figures the decision took.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, func
from sqlalchemy import select as grouped
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from definition.durations import format_duration
from definition.events import EventType
from definition.holdout import in_global_holdout
from definition.model import (
    DEFAULT_SPLIT_WINDOW,
    Journey,
    SplitSpec,
    SplitStep,
    WinnerRule,
    iter_steps,
    split_window,
)
from reports.statistics import (
    Interval,
    MeanSample,
    difference_interval,
    mean_difference_interval,
    two_proportion_p_value,
    wilson,
)
from storage import journey_versions
from storage.models import Customer, Event, ExperimentAssignment, ExperimentWinner

HOLDOUT = "holdout"


class ArmResult(BaseModel):
    arm: str
    """The arm's name, or "holdout"."""
    customers: int
    converted: int
    conversion_rate: float
    conversion_interval: Interval
    revenue: float
    revenue_per_customer: float
    difference: float | None = None
    """conversion_rate minus the baseline's; None for the baseline itself."""
    difference_interval: Interval | None = None
    p_value: float | None = None
    """Two-proportion z-test against the baseline."""


class WinnerResult(BaseModel):
    arm: str
    decided_at: datetime
    figures: dict[str, Any]


class SplitResult(BaseModel):
    journey_id: str
    split: str
    window: str
    baseline: str
    """What each arm is compared with: the holdout, or the first arm when there is none."""
    arms: list[ArmResult]
    winner: WinnerResult | None = None


class GroupRevenue(BaseModel):
    customers: int
    buyers: int
    revenue: float
    revenue_per_customer: float


class ProgrammeResult(BaseModel):
    """Everyone else against the global control group (CYKLO_GLOBAL_HOLDOUT_PERCENT)."""

    holdout_percent: float
    since: datetime | None
    until: datetime | None
    treated: GroupRevenue
    control: GroupRevenue
    incremental_revenue_per_customer: float
    interval: Interval | None
    """Welch's standard error with the normal quantile (95 %); None with under two in a group."""


class ExperimentsReport(BaseModel):
    splits: list[SplitResult]
    programme: ProgrammeResult | None
    """None when no global control group is set (CYKLO_GLOBAL_HOLDOUT_PERCENT = 0)."""

    def as_text(self) -> str:
        lines: list[str] = []
        for split in self.splits:
            lines.append(
                f"{split.journey_id} / split {split.split} (window {split.window}, against {split.baseline})"
            )
            lines.append(
                f"  {'arm':<16}{'customers':>10}{'converted':>10}{'rate':>8}  {'95% interval':<17}"
                f"{'diff':>8}  {'diff interval':<19}{'p':>8}{'revenue/cust':>14}"
            )
            for arm in split.arms:
                diff = f"{arm.difference:+.1%}" if arm.difference is not None else "-"
                diff_interval = _interval(arm.difference_interval, signed=True)
                p_value = f"{arm.p_value:.4f}" if arm.p_value is not None else "-"
                lines.append(
                    f"  {arm.arm:<16}{arm.customers:>10}{arm.converted:>10}{arm.conversion_rate:>8.1%}  "
                    f"{_interval(arm.conversion_interval):<17}{diff:>8}  {diff_interval:<19}{p_value:>8}"
                    f"{arm.revenue_per_customer:>14.2f}"
                )
            if split.winner is not None:
                lines.append(
                    f"  winner: {split.winner.arm} since {split.winner.decided_at.isoformat()} "
                    f"(p = {split.winner.figures.get('p_value', 0):.4g})"
                )
            lines.append("")
        if not self.splits:
            lines += ["no split has assigned anyone yet", ""]
        programme = self.programme
        if programme is None:
            lines.append("programme: no global control group (CYKLO_GLOBAL_HOLDOUT_PERCENT is 0)")
        else:
            lines.append(f"programme against the global control group ({programme.holdout_percent:g} %)")
            for name, group in (("treated", programme.treated), ("control", programme.control)):
                lines.append(
                    f"  {name:<10}{group.customers:>10} customers{group.buyers:>8} buyers"
                    f"{group.revenue:>14.2f} revenue{group.revenue_per_customer:>10.2f} per customer"
                )
            interval = programme.interval
            around = (
                f" [{interval.low:+.2f}, {interval.high:+.2f}] (95 %, Welch, normal approximation)"
                if interval
                else ""
            )
            lines.append(
                f"  incremental revenue per customer: {programme.incremental_revenue_per_customer:+.2f}{around}"
            )
        return "\n".join(lines) + "\n"

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(self.csv_rows())
        return out.getvalue()

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per arm, then the programme's treated and control (`converted`: buyers)."""
        rows = []
        for split in self.splits:
            for arm in split.arms:
                difference = arm.difference_interval
                rows.append(
                    {
                        "journey": split.journey_id,
                        "split": split.split,
                        "arm": arm.arm,
                        "customers": arm.customers,
                        "converted": arm.converted,
                        "conversion_rate": arm.conversion_rate,
                        "rate_low": arm.conversion_interval.low,
                        "rate_high": arm.conversion_interval.high,
                        "difference": _blank(arm.difference),
                        "difference_low": _blank(difference.low if difference else None),
                        "difference_high": _blank(difference.high if difference else None),
                        "p_value": _blank(arm.p_value),
                        "revenue": arm.revenue,
                        "revenue_per_customer": arm.revenue_per_customer,
                    }
                )
        if self.programme is not None:
            for name, group in (("treated", self.programme.treated), ("control", self.programme.control)):
                rows.append(
                    {
                        "journey": "(programme)",
                        "split": "global_holdout",
                        "arm": name,
                        "customers": group.customers,
                        "converted": group.buyers,
                        "revenue": group.revenue,
                        "revenue_per_customer": group.revenue_per_customer,
                    }
                )
        return rows


CSV_COLUMNS = (
    "journey",
    "split",
    "arm",
    "customers",
    "converted",
    "conversion_rate",
    "rate_low",
    "rate_high",
    "difference",
    "difference_low",
    "difference_high",
    "p_value",
    "revenue",
    "revenue_per_customer",
)


def _interval(interval: Interval | None, *, signed: bool = False) -> str:
    if interval is None:
        return "-"
    form = "+.1%" if signed else ".1%"
    return f"[{interval.low:{form}}, {interval.high:{form}}]"


def _blank(value: float | None) -> float | str:
    return "" if value is None else value


# --- the counts ----------------------------------------------------------------------------


class ArmCounts(BaseModel):
    customers: int = 0
    converted: int = 0
    revenue: float = 0.0


def arm_counts(
    session: Session,
    journey_id: str,
    split: str,
    window: timedelta,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    matured_by: datetime | None = None,
    hashed_only: bool = False,
    global_holdout_percent: float = 0.0,
) -> dict[str | None, ArmCounts]:
    """Customers, conversions and revenue per arm (None: the holdout) of assignments made in
    [since, until); `matured_by`: only those whose window had ended by then (the winner rule
    judges complete windows only); `hashed_only`: leave out the winner rule's own assignments.
    Customers of the global control group are left out: they get no arm's message."""
    assignment, purchase = ExperimentAssignment, Event
    # Each assignment with the purchases after it, joined in SQL: plain columns, no JSON, so a
    # split of 100,000 customers is one query. The window's end is checked here, in Python:
    # SQLite cannot add an interval to a time.
    query = (
        grouped(
            col(assignment.id),
            col(assignment.customer_id),
            col(assignment.arm),
            col(assignment.assigned_at),
            col(purchase.occurred_at),
            col(purchase.amount),
        )
        .select_from(assignment)
        .outerjoin(
            purchase,
            and_(
                col(purchase.customer_id) == col(assignment.customer_id),
                col(purchase.type) == EventType.PURCHASE,
                col(purchase.occurred_at) >= col(assignment.assigned_at),
            ),
        )
        .where(col(assignment.journey_id) == journey_id, col(assignment.split) == split)
    )
    if since is not None:
        query = query.where(col(assignment.assigned_at) >= since)
    if until is not None:
        query = query.where(col(assignment.assigned_at) < until)
    if matured_by is not None:
        query = query.where(col(assignment.assigned_at) <= matured_by - window)
    if hashed_only:
        query = query.where(col(assignment.by_winner).is_(False))
    revenue: dict[int, float] = {}
    arms: dict[int, tuple[str, str | None]] = {}
    for assignment_id, customer_id, arm, assigned_at, occurred_at, amount in session.execute(query):
        arms[assignment_id] = (customer_id, arm)
        if occurred_at is not None and occurred_at < assigned_at + window:
            revenue[assignment_id] = revenue.get(assignment_id, 0.0) + (amount or 0.0)
    counts: dict[str | None, ArmCounts] = defaultdict(ArmCounts)
    for assignment_id, (customer_id, arm) in arms.items():
        if in_global_holdout(customer_id, global_holdout_percent):
            continue
        counts[arm].customers += 1
        if assignment_id in revenue:
            counts[arm].converted += 1
            counts[arm].revenue += revenue[assignment_id]
    return counts


# --- one split -----------------------------------------------------------------------------


def split_result(
    journey_id: str,
    split: str,
    arm_order: list[str],
    counts: dict[str | None, ArmCounts],
    window: timedelta,
    winner: WinnerResult | None = None,
) -> SplitResult:
    """The arms in the definition's order (arms it no longer has after them), the holdout first."""
    names = [*arm_order, *sorted(str(arm) for arm in counts if arm is not None and arm not in arm_order)]
    ordered: list[tuple[str, ArmCounts]] = []
    if None in counts:
        ordered.append((HOLDOUT, counts[None]))
    ordered += [(name, counts.get(name, ArmCounts())) for name in names]
    baseline_name, base = ordered[0]
    arms = []
    for name, arm in ordered:
        rate = arm.converted / arm.customers if arm.customers else 0.0
        result = ArmResult(
            arm=name,
            customers=arm.customers,
            converted=arm.converted,
            conversion_rate=rate,
            conversion_interval=wilson(arm.converted, arm.customers),
            revenue=round(arm.revenue, 2),
            revenue_per_customer=round(arm.revenue / arm.customers, 2) if arm.customers else 0.0,
        )
        if name != baseline_name and base.customers and arm.customers:
            result.difference = rate - base.converted / base.customers
            result.difference_interval = difference_interval(
                arm.converted, arm.customers, base.converted, base.customers
            )
            result.p_value = two_proportion_p_value(
                arm.converted, arm.customers, base.converted, base.customers
            )
        arms.append(result)
    return SplitResult(
        journey_id=journey_id,
        split=split,
        window=format_duration(window),
        baseline=baseline_name,
        arms=arms,
        winner=winner,
    )


def _splits_of(session: Session, journey_id: str) -> dict[str, tuple[SplitSpec, timedelta]]:
    """The splits of the journey's newest published version by name, each with its window."""
    try:
        definition = Journey.model_validate_json(journey_versions.get(session, journey_id).definition)
    except journey_versions.JourneyNotPublished:
        return {}
    return {
        step.split.name: (step.split, split_window(definition, step.split))
        for stage in definition.stages.values()
        for step in iter_steps(stage.flow)
        if isinstance(step, SplitStep)
    }


def winner_of(session: Session, journey_id: str, split: str) -> ExperimentWinner | None:
    return session.exec(
        select(ExperimentWinner).where(
            ExperimentWinner.journey_id == journey_id, ExperimentWinner.split == split
        )
    ).first()


# --- the winner rule -----------------------------------------------------------------------


def decide_winner(
    session: Session,
    journey_id: str,
    split: str,
    arms: list[str],
    rule: WinnerRule,
    window: timedelta,
    now: datetime,
    global_holdout_percent: float = 0.0,
) -> str | None:
    """The split's winning arm: decided before, or now when the rule holds — every arm has
    `min_customers` assigned by the hash whose window has ended, and the best arm's rate
    beats the runner-up's with p < 1 - confidence (two-proportion z-test). The decision is
    recorded once (experiment_winners); None while the rule does not hold."""
    decided = winner_of(session, journey_id, split)
    if decided is not None:
        return decided.arm
    if len(arms) < 2:
        return None  # one arm has nothing to beat: the holdout is measured, never replaced
    counts = arm_counts(
        session,
        journey_id,
        split,
        window,
        matured_by=now,
        hashed_only=True,
        global_holdout_percent=global_holdout_percent,
    )
    if any(counts[arm].customers < rule.min_customers for arm in arms):
        return None
    ranked = sorted(arms, key=lambda arm: counts[arm].converted / counts[arm].customers, reverse=True)
    best, runner_up = counts[ranked[0]], counts[ranked[1]]
    p_value = two_proportion_p_value(best.converted, best.customers, runner_up.converted, runner_up.customers)
    if p_value is None or p_value >= 1 - rule.confidence:
        return None
    figures = {
        "arms": {arm: counts[arm].model_dump() for arm in arms},
        "runner_up": ranked[1],
        "p_value": p_value,
        "confidence": rule.confidence,
        "min_customers": rule.min_customers,
        "window": format_duration(window),
    }
    session.add(
        ExperimentWinner(journey_id=journey_id, split=split, arm=ranked[0], decided_at=now, figures=figures)
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # decided meanwhile by another customer's assignment: that one holds
        decided = winner_of(session, journey_id, split)
        assert decided is not None
        return decided.arm
    return ranked[0]


# --- the report ----------------------------------------------------------------------------


def experiments_report(
    session: Session,
    *,
    journey_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    holdout_percent: float = 0.0,
) -> ExperimentsReport:
    """Every split with assignments in [since, until) (of `journey_id`, or all), and the
    programme against the global control group over the same period."""
    query = select(ExperimentAssignment.journey_id, ExperimentAssignment.split).distinct()
    if journey_id is not None:
        query = query.where(ExperimentAssignment.journey_id == journey_id)
    splits = []
    definitions: dict[str, dict[str, tuple[SplitSpec, timedelta]]] = {}
    for journey, split in sorted(session.exec(query).all()):
        if journey not in definitions:
            definitions[journey] = _splits_of(session, journey)
        # A split gone from the newest version is still reported, over the default window.
        spec, window = definitions[journey].get(split, (None, DEFAULT_SPLIT_WINDOW))
        counts = arm_counts(
            session, journey, split, window, since=since, until=until, global_holdout_percent=holdout_percent
        )
        if not counts:
            continue
        winner_row = winner_of(session, journey, split)
        winner = (
            WinnerResult(arm=winner_row.arm, decided_at=winner_row.decided_at, figures=winner_row.figures)
            if winner_row is not None
            else None
        )
        order = [arm.name for arm in spec.arms] if spec is not None else []
        splits.append(split_result(journey, split, order, counts, window, winner))
    programme = programme_result(session, holdout_percent, since, until) if holdout_percent > 0 else None
    return ExperimentsReport(splits=splits, programme=programme)


def programme_result(
    session: Session, holdout_percent: float, since: datetime | None, until: datetime | None
) -> ProgrammeResult:
    """Revenue per customer of the treated against the control over [since, until): every
    customer with a profile created before `until` counts, buyer or not."""
    customers_query = select(Customer.id)
    if until is not None:
        customers_query = customers_query.where(Customer.created_at < until)
    customer_ids = list(session.exec(customers_query).all())
    purchases = grouped(col(Event.customer_id), func.sum(Event.amount)).where(
        col(Event.type) == EventType.PURCHASE
    )
    if since is not None:
        purchases = purchases.where(col(Event.occurred_at) >= since)
    if until is not None:
        purchases = purchases.where(col(Event.occurred_at) < until)
    revenue = {
        customer_id: float(total or 0.0)
        for customer_id, total in session.execute(purchases.group_by(Event.customer_id))
    }
    treated, control = _Group(), _Group()
    for customer_id in customer_ids:
        group = control if in_global_holdout(customer_id, holdout_percent) else treated
        group.add(revenue.get(customer_id))
    return ProgrammeResult(
        holdout_percent=holdout_percent,
        since=since,
        until=until,
        treated=treated.revenue(),
        control=control.revenue(),
        incremental_revenue_per_customer=round(treated.sample.mean - control.sample.mean, 2),
        interval=mean_difference_interval(treated.sample, control.sample),
    )


@dataclass
class _Group:
    """One side of the programme comparison: every customer's revenue in the period, 0 or more."""

    sample: MeanSample = field(default_factory=lambda: MeanSample(count=0, total=0.0, total_squares=0.0))
    buyers: int = 0

    def add(self, amount: float | None) -> None:
        self.sample.count += 1
        if amount is not None:
            self.buyers += 1
            self.sample.total += amount
            self.sample.total_squares += amount * amount

    def revenue(self) -> GroupRevenue:
        customers = self.sample.count
        return GroupRevenue(
            customers=customers,
            buyers=self.buyers,
            revenue=round(self.sample.total, 2),
            revenue_per_customer=round(self.sample.total / customers, 2) if customers else 0.0,
        )
