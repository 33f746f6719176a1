"""Lifecycle KPIs from the real tables: customers per stage now, flows between stages,
retention and churn, sign-up cohorts, CLV, order figures, NPS and CAC.

A period is `[since, until)`. Stage flows, retention and churn read `stage_entries` (one row
per stage a customer enters, written by the journey); everything about money, reviews and
sign-ups reads `events`: a purchase's amount from its column, scores and costs from the
properties' JSON, read back as dicts on SQLite and PostgreSQL alike (no dialect's own JSON
operators).

Choices (the README's lifecycle report section repeats them):
- A customer's cohort is the month (UTC) of their first `signed_up` event: the shop's time of
  sign-up, true for imported history too, where `customers.created_at` is only when cyklo
  got the profile. A customer with no `signed_up` event is in no cohort and not counted as
  acquired.
- Month k of a cohort is the k-th calendar month after the sign-up month; purchases before
  sign-up count in no month.
- Retention and churn: the base is every (journey, customer) whose latest stage entry before
  `since` is a retained stage (`active`, `vip`); churned are those of the base who enter the
  churn stage (`inactive`) during the period, even if they come back later in it; retention
  is the rest of the base.
- Order figures (AOV, repeat rate) count the purchases that happen in the period; the median
  time to a second order is over the customers whose second order ever happens in it.
- NPS counts every `review_submitted` answer in the period (a customer answering twice counts
  twice, as each review request is its own survey).
- CAC is the total `acquisition_cost` of the `signed_up` events of the customers acquired in
  the period (first sign-up in it) over their number; not available when none carries one.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from definition.events import EARLIEST_EVENT, LATEST_EVENT, EventType, number_in
from definition.model import Journey
from storage import journey_versions
from storage.models import Event, StageEntry

MONTHS_OF_LIFETIME = 12
"""CLV "over 12 months": revenue of a cohort's months 0 to 11."""
DEFAULT_PERIOD = timedelta(days=365)
"""Without `since`: a year back from `until` (default now), room for a year of cohorts."""
PROMOTERS = range(9, 11)
DETRACTORS = range(0, 7)


class Granularity(StrEnum):
    WEEK = "week"
    MONTH = "month"


class LifecycleStages(BaseModel):
    """Which stages mean what to retention and churn; the defaults are those of
    `journeys/lifecycle.yaml`."""

    retained: tuple[str, ...] = ("active", "vip")
    churned: str = "inactive"


# --- the report ------------------------------------------------------------------------


class StagesNow(BaseModel):
    """Running customers of one journey per stage, from Temporal visibility."""

    journey_id: str
    running: int
    by_stage: dict[str, int]
    unplaced: int
    """Running but in no stage count (entering, or started before stages were recorded)."""


class StageFlow(BaseModel):
    journey_id: str
    bucket: str
    """`2026-03` for a month, `2026-W10` for an ISO week."""
    from_stage: str | None
    """None: entering the journey."""
    to_stage: str
    customers: int
    """Stage entries: a customer entering the same stage twice in a bucket counts twice."""


class Retention(BaseModel):
    journey_id: str
    base: int
    """Customers in a retained stage at the start of the period."""
    churned: int
    retained: int
    retention_rate: float | None
    churn_rate: float | None


class Cohort(BaseModel):
    month: str
    customers: int
    bought: list[int]
    """Customers who bought in month 0, 1, 2, … after signing up (up to the period's end)."""
    shares: list[float]
    revenue_to_date: float
    clv_to_date: float
    """Revenue per customer of the cohort up to the end of the period."""
    clv_12_months: float | None
    """Revenue per customer in months 0–11; None while the cohort is younger than that."""


class Orders(BaseModel):
    """Purchases in the period."""

    purchases: int
    customers: int
    revenue: float
    average_order_value: float | None
    repeat_customers: int
    """Customers with two or more purchases in the period."""
    repeat_purchase_rate: float | None
    second_orders: int
    """Customers whose second order ever happened in the period."""
    median_days_to_second_order: float | None


class Nps(BaseModel):
    responses: int
    promoters: int
    passives: int
    detractors: int
    score: float | None
    """% promoters − % detractors, −100 to 100."""


class Acquisition(BaseModel):
    customers_acquired: int
    customers_with_cost: int
    total_cost: float
    cac: float | None
    """None: not available (no sign-up in the period carried an acquisition_cost)."""


class LifecycleReport(BaseModel):
    since: datetime
    until: datetime
    granularity: Granularity
    stages: LifecycleStages
    currency: str
    stages_now: list[StagesNow] | None
    stages_now_unavailable: str | None = None
    """Why there are no counts now (Temporal did not answer)."""
    flows: list[StageFlow]
    retention: list[Retention]
    cohorts: list[Cohort]
    clv_to_date: float | None
    """Revenue per customer to date over every cohort of the period."""
    orders: Orders
    nps: Nps
    acquisition: Acquisition

    def as_text(self) -> str:
        return "\n".join(_text(self))

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_csv_rows(self))
        return out.getvalue()

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per figure, by CSV_COLUMNS."""
        return [dict(zip(CSV_COLUMNS, row, strict=True)) for row in _csv_rows(self)]

    def of_journey(self, journey_id: str) -> LifecycleReport:
        """Only `journey_id`'s stages, flows and retention; the shop's figures (cohorts, CLV,
        orders, NPS, CAC) belong to no journey and stay whole."""
        return self.model_copy(
            update={
                "stages_now": None
                if self.stages_now is None
                else [now for now in self.stages_now if now.journey_id == journey_id],
                "flows": [flow for flow in self.flows if flow.journey_id == journey_id],
                "retention": [row for row in self.retention if row.journey_id == journey_id],
            }
        )


CSV_COLUMNS = ("section", "journey", "bucket", "name", "value")


def lifecycle_report(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    stages_now: list[StagesNow] | str | None = None,
    granularity: Granularity = Granularity.MONTH,
    stages: LifecycleStages | None = None,
    currency: str = "PLN",
) -> LifecycleReport:
    """The report of `[since, until)`. `stages_now` comes from Temporal visibility (the
    caller has the client: `visibility.stage_census` over `published_versions`), or the reason it is unknown."""
    stages = stages or LifecycleStages()
    signups = first_signups(session, until)
    purchases = purchases_until(session, until)
    cohorts = cohort_table(signups, purchases, since, until)
    cohort_customers = sum(cohort.customers for cohort in cohorts)
    return LifecycleReport(
        since=since,
        until=until,
        granularity=granularity,
        stages=stages,
        currency=currency,
        stages_now=None if isinstance(stages_now, str) else stages_now,
        stages_now_unavailable=stages_now if isinstance(stages_now, str) else None,
        flows=stage_flows(session, since, until, granularity),
        retention=retention(session, since, until, stages),
        cohorts=cohorts,
        clv_to_date=(
            _share(sum(cohort.revenue_to_date for cohort in cohorts), cohort_customers) if cohorts else None
        ),
        orders=order_figures(purchases, since, until),
        nps=nps(review_scores(session, since, until)),
        acquisition=acquisition(signups, since, until),
    )


def period(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The period asked for, with the defaults filled in; naive times are taken as UTC."""
    for field, moment in (("since", since), ("until", until)):
        if moment is not None and not EARLIEST_EVENT <= _aware(moment) <= LATEST_EVENT:
            raise PeriodProblem(field, f"a time between {EARLIEST_EVENT.year} and {LATEST_EVENT.year}")
    end = _aware(until) if until is not None else now
    start = _aware(since) if since is not None else end - DEFAULT_PERIOD
    if start >= end:
        raise PeriodProblem(
            "until", f"must be after since ({start:%Y-%m-%d %H:%M}); got {end:%Y-%m-%d %H:%M}"
        )
    return start, end


class PeriodProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- stages ----------------------------------------------------------------------------


def published_versions(session: Session) -> dict[str, dict[int, Journey]]:
    """Every published journey's versions: the stages the census counts by."""
    return {
        journey_id: {
            row.version: Journey.model_validate_json(row.definition)
            for row in journey_versions.history(session, journey_id)
        }
        for journey_id in journey_versions.published_ids(session)
    }


def stage_flows(
    session: Session, since: datetime, until: datetime, granularity: Granularity
) -> list[StageFlow]:
    rows = session.exec(
        select(
            StageEntry.journey_id, StageEntry.previous_stage, StageEntry.stage, StageEntry.entered_at
        ).where(col(StageEntry.entered_at) >= since, col(StageEntry.entered_at) < until)
    ).all()
    counted = Counter(
        (journey_id, bucket_of(entered_at, granularity), previous, stage)
        for journey_id, previous, stage, entered_at in rows
    )
    return [
        StageFlow(journey_id=journey_id, bucket=bucket, from_stage=previous, to_stage=stage, customers=count)
        for (journey_id, bucket, previous, stage), count in sorted(
            counted.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "", item[0][3])
        )
    ]


def retention(session: Session, since: datetime, until: datetime, stages: LifecycleStages) -> list[Retention]:
    # The latest entry of each (journey, customer) before the period: row_number() is a
    # window function SQLite (3.25+) and PostgreSQL share.
    ranked = (
        select(
            StageEntry.journey_id,
            StageEntry.customer_id,
            StageEntry.stage,
            func.row_number()
            .over(
                partition_by=(col(StageEntry.journey_id), col(StageEntry.customer_id)),
                order_by=(col(StageEntry.entered_at).desc(), col(StageEntry.id).desc()),
            )
            .label("recency"),
        )
        .where(col(StageEntry.entered_at) < since)
        .subquery()
    )
    at_start = session.exec(
        select(ranked.c.journey_id, ranked.c.customer_id).where(
            ranked.c.recency == 1, ranked.c.stage.in_(stages.retained)
        )
    ).all()
    left = session.exec(
        select(StageEntry.journey_id, StageEntry.customer_id)
        .where(
            StageEntry.stage == stages.churned,
            col(StageEntry.entered_at) >= since,
            col(StageEntry.entered_at) < until,
        )
        .distinct()
    ).all()
    return retention_of(at_start, left)


def retention_of(at_start: Iterable[tuple[str, str]], left: Iterable[tuple[str, str]]) -> list[Retention]:
    """Per journey: of the (journey, customer) pairs retained at the start, how many left."""
    base: dict[str, set[str]] = defaultdict(set)
    for journey_id, customer_id in at_start:
        base[journey_id].add(customer_id)
    churned: dict[str, set[str]] = defaultdict(set)
    for journey_id, customer_id in left:
        if customer_id in base.get(journey_id, ()):
            churned[journey_id].add(customer_id)
    found = []
    for journey_id in sorted(base):
        size, lost = len(base[journey_id]), len(churned[journey_id])
        found.append(
            Retention(
                journey_id=journey_id,
                base=size,
                churned=lost,
                retained=size - lost,
                retention_rate=_share(size - lost, size),
                churn_rate=_share(lost, size),
            )
        )
    return found


def bucket_of(moment: datetime, granularity: Granularity) -> str:
    if granularity == Granularity.MONTH:
        return f"{moment:%Y-%m}"
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


# --- cohorts, money --------------------------------------------------------------------


@dataclass(frozen=True)
class Purchase:
    customer_id: str
    at: datetime
    amount: float


@dataclass(frozen=True)
class Signup:
    customer_id: str
    at: datetime
    acquisition_cost: float | None


def first_signups(session: Session, until: datetime) -> dict[str, Signup]:
    """Each customer's first `signed_up` before `until`."""
    rows = session.exec(
        select(Event.customer_id, Event.occurred_at, Event.properties)
        .where(Event.type == EventType.SIGNED_UP, col(Event.occurred_at) < until)
        .order_by(col(Event.occurred_at))
    ).all()
    first: dict[str, Signup] = {}
    for customer_id, occurred_at, properties in rows:
        if customer_id not in first:
            first[customer_id] = Signup(customer_id, occurred_at, _number_of(properties, "acquisition_cost"))
    return first


def purchases_until(session: Session, until: datetime) -> list[Purchase]:
    rows = session.exec(
        select(Event.customer_id, Event.occurred_at, Event.amount)
        .where(Event.type == EventType.PURCHASE, col(Event.occurred_at) < until)
        .order_by(col(Event.occurred_at))
    ).all()
    return [Purchase(customer_id, occurred_at, amount or 0.0) for customer_id, occurred_at, amount in rows]


def month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def cohort_table(
    signups: Mapping[str, Signup], purchases: Sequence[Purchase], since: datetime, until: datetime
) -> list[Cohort]:
    """Cohorts of the customers who signed up in the period, purchases up to `until`."""
    members: dict[int, set[str]] = defaultdict(set)
    for joined in signups.values():
        if since <= joined.at < until:
            members[month_index(joined.at)].add(joined.customer_id)
    last_month = month_index(until - timedelta(microseconds=1))
    bought: dict[int, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    revenue: dict[int, float] = defaultdict(float)
    first_year: dict[int, float] = defaultdict(float)
    for purchase in purchases:
        signup = signups.get(purchase.customer_id)
        if signup is None or not since <= signup.at < until or purchase.at < signup.at:
            continue
        cohort, offset = month_index(signup.at), month_index(purchase.at) - month_index(signup.at)
        bought[cohort][offset].add(purchase.customer_id)
        revenue[cohort] += purchase.amount
        if offset < MONTHS_OF_LIFETIME:
            first_year[cohort] += purchase.amount
    cohorts = []
    for cohort, customers in sorted(members.items()):
        size = len(customers)
        months = last_month - cohort + 1
        counts = [len(bought[cohort][offset]) for offset in range(months)]
        cohorts.append(
            Cohort(
                month=f"{cohort // 12:04d}-{cohort % 12 + 1:02d}",
                customers=size,
                bought=counts,
                shares=[count / size for count in counts],
                revenue_to_date=revenue[cohort],
                clv_to_date=revenue[cohort] / size,
                clv_12_months=first_year[cohort] / size if months >= MONTHS_OF_LIFETIME else None,
            )
        )
    return cohorts


def order_figures(purchases: Sequence[Purchase], since: datetime, until: datetime) -> Orders:
    """`purchases` in time order, up to `until`."""
    in_period = [purchase for purchase in purchases if since <= purchase.at < until]
    per_customer = Counter(purchase.customer_id for purchase in in_period)
    revenue = sum(purchase.amount for purchase in in_period)
    ordered: dict[str, list[datetime]] = defaultdict(list)
    for purchase in purchases:
        ordered[purchase.customer_id].append(purchase.at)
    gaps = [
        (times[1] - times[0]) / timedelta(days=1)
        for times in ordered.values()
        if len(times) >= 2 and since <= times[1] < until
    ]
    repeat = sum(1 for count in per_customer.values() if count >= 2)
    return Orders(
        purchases=len(in_period),
        customers=len(per_customer),
        revenue=revenue,
        average_order_value=_share(revenue, len(in_period)),
        repeat_customers=repeat,
        repeat_purchase_rate=_share(repeat, len(per_customer)),
        second_orders=len(gaps),
        median_days_to_second_order=statistics.median(gaps) if gaps else None,
    )


def acquisition(signups: Mapping[str, Signup], since: datetime, until: datetime) -> Acquisition:
    acquired = [signup for signup in signups.values() if since <= signup.at < until]
    costs = [signup.acquisition_cost for signup in acquired if signup.acquisition_cost is not None]
    total = sum(costs)
    return Acquisition(
        customers_acquired=len(acquired),
        customers_with_cost=len(costs),
        total_cost=total,
        cac=_share(total, len(acquired)) if costs else None,
    )


# --- NPS -------------------------------------------------------------------------------


def review_scores(session: Session, since: datetime, until: datetime) -> list[int]:
    rows = session.exec(
        select(Event.properties).where(
            Event.type == EventType.REVIEW_SUBMITTED,
            col(Event.occurred_at) >= since,
            col(Event.occurred_at) < until,
        )
    ).all()
    scores = (_number_of(properties, "score") for properties in rows)
    # The API takes only whole scores 0–10; anything else predates the rule and is not an answer.
    return [int(score) for score in scores if score is not None and score.is_integer() and 0 <= score <= 10]


def nps(scores: Sequence[int]) -> Nps:
    promoters = sum(1 for score in scores if score in PROMOTERS)
    detractors = sum(1 for score in scores if score in DETRACTORS)
    return Nps(
        responses=len(scores),
        promoters=promoters,
        passives=len(scores) - promoters - detractors,
        detractors=detractors,
        score=100 * (promoters - detractors) / len(scores) if scores else None,
    )


def _number_of(properties: Any, name: str) -> float | None:
    return number_in(properties, name) if isinstance(properties, dict) else None


def _share(part: float, whole: int) -> float | None:
    return part / whole if whole else None


# --- presentation ----------------------------------------------------------------------


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _money(amount: float | None, currency: str) -> str:
    return "n/a" if amount is None else f"{amount:,.2f} {currency}"


def _text(report: LifecycleReport) -> Iterable[str]:
    money = report.currency
    yield f"Lifecycle {report.since:%Y-%m-%d %H:%M} – {report.until:%Y-%m-%d %H:%M} UTC"
    yield ""
    yield "Customers per stage now"
    if report.stages_now is None:
        yield f"  unknown ({report.stages_now_unavailable})"
    elif not report.stages_now:
        yield "  no journey published"
    else:
        for now in report.stages_now:
            yield f"  {now.journey_id}: {now.running} running"
            for stage, count in now.by_stage.items():
                yield f"    {stage:<20}{count:>8}"
            if now.unplaced:
                yield f"    {'(no stage yet)':<20}{now.unplaced:>8}"
    yield ""
    yield f"Stage flows per {report.granularity}"
    if not report.flows:
        yield "  no stage entries in the period"
    for flow in report.flows:
        yield f"  {flow.journey_id:<12}{flow.bucket:<10}{flow.from_stage or '(start)':>14} → {flow.to_stage:<14}{flow.customers:>7}"
    yield ""
    retained = "/".join(report.stages.retained)
    yield f"Retention and churn ({retained} at the start, {report.stages.churned} during the period)"
    if not report.retention:
        yield f"  nobody was {retained} at the start"
    for row in report.retention:
        yield (
            f"  {row.journey_id:<12}base {row.base:>6}  retained {row.retained:>6} ({_percent(row.retention_rate)})"
            f"  churned {row.churned:>6} ({_percent(row.churn_rate)})"
        )
    yield ""
    yield "Cohorts by sign-up month: share who bought in month 0, 1, 2, …"
    if not report.cohorts:
        yield "  no sign-ups in the period"
    else:
        months = max(len(cohort.shares) for cohort in report.cohorts)
        yield f"  {'cohort':<7}  {'size':>6}" + "".join(f"{f'm{offset}':>8}" for offset in range(months))
    for cohort in report.cohorts:
        yield f"  {cohort.month}  {cohort.customers:>6}" + "".join(
            f"{share:>8.1%}" for share in cohort.shares
        )
    yield ""
    yield "Customer lifetime value (revenue per customer)"
    yield f"  to date, all cohorts: {_money(report.clv_to_date, money)}"
    for cohort in report.cohorts:
        yield (
            f"  {cohort.month}  to date {_money(cohort.clv_to_date, money):>16}"
            f"  12 months {_money(cohort.clv_12_months, money) if cohort.clv_12_months is not None else 'not yet':>16}"
        )
    orders = report.orders
    yield ""
    yield "Orders in the period"
    yield f"  purchases {orders.purchases}, customers {orders.customers}, revenue {_money(orders.revenue, money)}"
    yield f"  average order value       {_money(orders.average_order_value, money)}"
    yield f"  repeat purchase rate      {_percent(orders.repeat_purchase_rate)} ({orders.repeat_customers} of {orders.customers})"
    median = orders.median_days_to_second_order
    yield f"  median time to 2nd order  {'n/a' if median is None else f'{median:.1f} days'} ({orders.second_orders} second orders)"
    score = report.nps
    yield ""
    yield (
        f"NPS {'n/a' if score.score is None else f'{score.score:+.1f}'}: {score.responses} answers, "
        f"{score.promoters} promoters, {score.passives} passives, {score.detractors} detractors"
    )
    bought = report.acquisition
    cac = (
        "not available (no signed_up event carried acquisition_cost)"
        if bought.cac is None
        else _money(bought.cac, money)
    )
    yield f"CAC {cac}: {bought.customers_acquired} customers acquired, {bought.customers_with_cost} with a cost"


def _csv_rows(report: LifecycleReport) -> Iterable[list[Any]]:
    for now in report.stages_now or []:
        for stage, count in now.by_stage.items():
            yield ["stages_now", now.journey_id, "", stage, count]
        yield ["stages_now", now.journey_id, "", "(running)", now.running]
    for flow in report.flows:
        yield [
            "flow",
            flow.journey_id,
            flow.bucket,
            f"{flow.from_stage or ''}>{flow.to_stage}",
            flow.customers,
        ]
    for row in report.retention:
        for name in ("base", "retained", "churned", "retention_rate", "churn_rate"):
            yield ["retention", row.journey_id, "", name, getattr(row, name)]
    for cohort in report.cohorts:
        yield ["cohort", "", cohort.month, "customers", cohort.customers]
        for offset, share in enumerate(cohort.shares):
            yield ["cohort", "", cohort.month, f"month {offset}", share]
        yield ["clv", "", cohort.month, "to_date", cohort.clv_to_date]
        yield ["clv", "", cohort.month, "12_months", cohort.clv_12_months]
    yield ["clv", "", "", "to_date", report.clv_to_date]
    for name, value in report.orders.model_dump().items():
        yield ["orders", "", "", name, value]
    for name, value in report.nps.model_dump().items():
        yield ["nps", "", "", name, value]
    for name, value in report.acquisition.model_dump().items():
        yield ["acquisition", "", "", name, value]
