"""Lifecycle KPIs from the real tables, on SQLite and PostgreSQL: a known shop — sign-ups,
purchases, reviews and the journey's stage entries — gives exact retention and churn, stage
flows, cohort shares, CLV, order figures, NPS and CAC; the CLI prints them; and on the real
Temporal dev server the API adds customers per stage now and refuses an NPS score of 11."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.server import ProviderEmulator
from reports.lifecycle import Granularity, LifecycleReport, LifecycleStages, lifecycle_report
from settings import get_settings
from storage.database import migrate, session_for
from storage.models import Event, StageEntry
from tests.conftest import JOURNEYS, emulator_settings, start_dev_server
from tests.test_erasure_export import PROFILE, Api, _api_settings, serving
from tests.test_publish import cyklo

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 6, 1, tzinfo=UTC)
SHOP_KEY = "shop-platform-key-0001"
REPORTS_KEY = "marketing-reports-key-01"
AS_SHOP = {"Authorization": f"Bearer {SHOP_KEY}"}
AS_MARKETER = {"Authorization": f"Bearer {REPORTS_KEY}"}


def day(text: str) -> datetime:
    """Noon UTC of a date: far from any month's edge."""
    return datetime.fromisoformat(f"{text}T12:00:00+00:00")


SIGNUPS: list[tuple[str, str, float | None]] = [
    ("a", "2026-03-05", 40.0),
    ("b", "2026-03-20", 60.0),
    ("c", "2026-03-25", None),
    ("d", "2026-04-10", 20.0),
    ("a", "2026-04-01", 999.0),  # signing up again: the first sign-up is the one that counts
    ("e", "2026-02-10", 100.0),  # before the period: neither in a cohort nor acquired in it
    ("g", "2025-03-10", None),
]
PURCHASES: list[tuple[str, str, float]] = [
    ("a", "2026-03-06", 100.0),
    ("a", "2026-03-16", 50.0),  # second order 10 days after the first
    ("a", "2026-05-02", 30.0),
    ("a", "2026-06-05", 1000.0),  # after the period: counted nowhere
    ("b", "2026-04-21", 200.0),
    ("d", "2026-04-11", 80.0),
    ("d", "2026-05-15", 20.0),  # second order after 34 days
    ("e", "2026-02-15", 500.0),
    ("e", "2026-03-10", 70.0),  # second order in the period, after 23 days
    ("f", "2026-05-20", 90.0),  # never signed up: an order, in no cohort
    ("g", "2025-03-11", 100.0),
    ("g", "2026-02-20", 40.0),  # g's month 11: inside the first 12 months
]
REVIEWS: list[tuple[str, int]] = [
    ("2026-03-07", 10),
    ("2026-03-08", 9),
    ("2026-04-01", 8),
    ("2026-04-02", 7),
    ("2026-04-03", 6),
    ("2026-05-04", 0),
    ("2026-05-05", 10),
    ("2026-02-01", 0),  # before the period
]
# (journey, customer, stage, previous, date)
ENTRIES: list[tuple[str, str, str, str | None, str]] = [
    ("lifecycle", "s1", "new", None, "2026-01-01"),
    ("lifecycle", "s1", "active", "new", "2026-02-01"),
    ("lifecycle", "s1", "inactive", "active", "2026-04-15"),  # churned…
    ("lifecycle", "s1", "active", "inactive", "2026-05-01"),  # …even though back within the period
    ("lifecycle", "s2", "active", "new", "2026-01-10"),
    ("lifecycle", "s2", "vip", "active", "2026-02-10"),  # VIP at the start, stays: retained
    ("lifecycle", "s3", "active", "new", "2026-02-20"),
    ("lifecycle", "s3", "inactive", "active", "2026-06-10"),  # after the period: retained in it
    ("lifecycle", "s4", "active", "new", "2026-01-01"),
    ("lifecycle", "s4", "inactive", "active", "2026-02-25"),  # inactive at the start: not in the base
    ("lifecycle", "s4", "active", "inactive", "2026-03-10"),
    ("lifecycle", "s4", "inactive", "active", "2026-05-10"),
    ("lifecycle", "s5", "prospect", None, "2026-03-02"),
    ("lifecycle", "s6", "prospect", None, "2026-03-14"),
    ("lifecycle", "s6", "new", "prospect", "2026-03-15"),
    ("lifecycle", "s7", "prospect", None, "2026-03-19"),
    ("lifecycle", "s7", "new", "prospect", "2026-03-20"),
    ("winback", "s1", "active", None, "2026-02-01"),  # another journey: its own base
]


def fill(database_url: str) -> None:
    migrate(database_url)
    with session_for(database_url) as session:
        for number, (customer, date, cost) in enumerate(SIGNUPS):
            properties = {} if cost is None else {"acquisition_cost": cost}
            session.add(Event(event_id=f"s-{number}", customer_id=customer, type="signed_up", occurred_at=day(date), properties=properties))
        for number, (customer, date, amount) in enumerate(PURCHASES):
            order: dict[str, Any] = {"order_id": f"o-{number}", "amount": amount}
            session.add(Event(event_id=f"p-{number}", customer_id=customer, type="purchase", occurred_at=day(date), properties=order))
        for number, (date, score) in enumerate(REVIEWS):
            session.add(
                Event(event_id=f"r-{number}", customer_id=f"r{number}", type="review_submitted", occurred_at=day(date), properties={"score": score})
            )
        entries: dict[tuple[str, str], int] = {}
        for journey, customer, stage, previous, date in ENTRIES:
            entry = entries[(journey, customer)] = entries.get((journey, customer), 0) + 1
            session.add(
                StageEntry(
                    journey_id=journey,
                    customer_id=customer,
                    instance="i1",
                    entry=entry,
                    stage=stage,
                    previous_stage=previous,
                    journey_version=1,
                    entered_at=day(date),
                )
            )
        session.commit()


def report(database_url: str, since: datetime = SINCE, until: datetime = UNTIL, **options: Any) -> LifecycleReport:
    with session_for(database_url, read_only=True) as session:
        return lifecycle_report(session, since, until, stages_now="not asked", **options)


def test_retention_and_churn_count_who_was_active_or_vip_at_the_start(database_url: str) -> None:
    fill(database_url)

    found = {row.journey_id: row for row in report(database_url).retention}

    lifecycle = found["lifecycle"]
    assert (lifecycle.base, lifecycle.churned, lifecycle.retained) == (3, 1, 2)
    assert lifecycle.churn_rate == pytest.approx(1 / 3) and lifecycle.retention_rate == pytest.approx(2 / 3)
    assert (found["winback"].base, found["winback"].churned) == (1, 0)


def test_the_stages_of_retention_are_a_parameter(database_url: str) -> None:
    fill(database_url)

    only_vip = report(database_url, stages=LifecycleStages(retained=("vip",), churned="inactive")).retention

    assert [(row.journey_id, row.base, row.churned) for row in only_vip] == [("lifecycle", 1, 0)]


def test_stage_flows_per_month_and_per_week(database_url: str) -> None:
    fill(database_url)

    monthly = [(flow.journey_id, flow.bucket, flow.from_stage, flow.to_stage, flow.customers) for flow in report(database_url).flows]
    weekly = report(database_url, granularity=Granularity.WEEK).flows

    assert monthly == [
        ("lifecycle", "2026-03", None, "prospect", 3),
        ("lifecycle", "2026-03", "inactive", "active", 1),
        ("lifecycle", "2026-03", "prospect", "new", 2),
        ("lifecycle", "2026-04", "active", "inactive", 1),
        ("lifecycle", "2026-05", "active", "inactive", 1),
        ("lifecycle", "2026-05", "inactive", "active", 1),
    ]
    # 2026-03-02 is the Monday of ISO week 10; 03-14 (Saturday) closes week 11.
    assert [(flow.bucket, flow.customers) for flow in weekly if flow.to_stage == "prospect"] == [
        ("2026-W10", 1),
        ("2026-W11", 1),
        ("2026-W12", 1),
    ]


def test_cohorts_by_sign_up_month_and_their_lifetime_value(database_url: str) -> None:
    fill(database_url)

    found = report(database_url)

    march, april = found.cohorts
    assert (march.month, march.customers, march.bought) == ("2026-03", 3, [1, 1, 1])
    assert march.shares == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert (march.revenue_to_date, march.clv_to_date) == (380.0, pytest.approx(380 / 3))
    assert (april.month, april.customers, april.bought, april.shares) == ("2026-04", 1, [1, 1], [1.0, 1.0])
    assert april.clv_to_date == 100.0
    assert march.clv_12_months is None and april.clv_12_months is None, "not 12 months old yet"
    assert found.clv_to_date == 120.0


def test_a_cohort_twelve_months_old_has_its_twelve_month_value(database_url: str) -> None:
    fill(database_url)

    g_cohort = report(database_url, since=datetime(2025, 3, 1, tzinfo=UTC), until=SINCE).cohorts[0]

    assert (g_cohort.month, g_cohort.customers, len(g_cohort.bought)) == ("2025-03", 1, 12)
    assert g_cohort.bought[0] == 1 and g_cohort.bought[11] == 1 and sum(g_cohort.bought) == 2
    assert g_cohort.clv_12_months == 140.0


def test_order_value_repeat_rate_and_time_to_second_order(database_url: str) -> None:
    fill(database_url)

    orders = report(database_url).orders

    assert (orders.purchases, orders.customers, orders.revenue) == (8, 5, 640.0)
    assert orders.average_order_value == 80.0
    assert (orders.repeat_customers, orders.repeat_purchase_rate) == (2, 0.4)
    assert (orders.second_orders, orders.median_days_to_second_order) == (3, 23.0)


def test_nps_and_cac(database_url: str) -> None:
    fill(database_url)

    found = report(database_url)

    nps = found.nps
    assert (nps.responses, nps.promoters, nps.passives, nps.detractors) == (7, 3, 2, 2)
    assert nps.score == pytest.approx(100 * (3 - 2) / 7)
    acquired = found.acquisition
    assert (acquired.customers_acquired, acquired.customers_with_cost, acquired.total_cost) == (4, 3, 120.0)
    assert acquired.cac == 30.0


def test_cac_is_not_available_without_acquisition_costs(database_url: str) -> None:
    fill(database_url)

    acquired = report(database_url, since=datetime(2025, 3, 1, tzinfo=UTC), until=datetime(2025, 4, 1, tzinfo=UTC)).acquisition

    assert (acquired.customers_acquired, acquired.cac) == (1, None)


def test_the_cli_prints_the_tables_json_and_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filled_and_published(tmp_path, monkeypatch)
    period = ["--since", "2026-03-01", "--until", "2026-05-31"]  # May 31 included, as in `cyklo report`

    text = cyklo("report-lifecycle", *period)
    as_json = cyklo("report-lifecycle", *period, "--json")
    as_csv = cyklo("report-lifecycle", *period, "--csv")
    bad = cyklo("report-lifecycle", "--since", "March")

    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert "  unknown (Temporal at 127.0.0.1:1: no connection)" in lines
    assert "  lifecycle   base      3  retained      2 (66.7%)  churned      1 (33.3%)" in lines
    assert "  cohort     size      m0      m1      m2" in lines
    assert "  2026-03       3   33.3%   33.3%   33.3%" in lines
    assert "  2026-04       1  100.0%  100.0%" in lines
    assert "  average order value       80.00 PLN" in lines
    assert "  median time to 2nd order  23.0 days (3 second orders)" in lines
    assert "NPS +14.3: 7 answers, 3 promoters, 2 passives, 2 detractors" in lines
    assert "CAC 30.00 PLN: 4 customers acquired, 3 with a cost" in lines
    assert json.loads(as_json.stdout)["orders"]["repeat_purchase_rate"] == 0.4
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["section", "journey", "bucket", "name", "value"]
    assert ["cohort", "", "2026-04", "month 1", "1.0"] in rows and ["acquisition", "", "", "cac", "30.0"] in rows
    assert bad.exit_code == 2 and "--since" in bad.output and "Traceback" not in bad.output
    get_settings.cache_clear()


def test_cyklo_report_shows_the_lifecycle_beside_the_funnels_and_narrows_it_to_one_journey(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled_and_published(tmp_path, monkeypatch)
    period = ["--since", "2026-03-01", "--until", "2026-05-31"]

    whole = cyklo("report", *period)
    lifecycle_only = cyklo("report", *period, "--journey", "lifecycle", "--csv")
    as_json = cyklo("report", *period, "--journey", "winback", "--json")
    weekly = cyklo("report", *period, "--weekly", "--json")
    get_settings.cache_clear()

    assert whole.exit_code == 0, whole.output
    lines = whole.stdout.splitlines()
    assert [line for line in lines if line.startswith("== ")] == ["== Journeys", "== Experiments", "== Lifecycle"]
    assert "no messages in this period" in lines and "no split has assigned anyone yet" in lines
    assert "  lifecycle   base      3  retained      2 (66.7%)  churned      1 (33.3%)" in lines
    assert "  winback     base      1  retained      1 (100.0%)  churned      0 (0.0%)" in lines
    assert "NPS +14.3: 7 answers, 3 promoters, 2 passives, 2 detractors" in lines
    rows = list(csv.DictReader(io.StringIO(lifecycle_only.stdout)))
    assert {row["section"] for row in rows} == {"lifecycle"}, "no message, no split: only the lifecycle"
    assert {row["journey"] for row in rows if row["kpi"] in ("flow", "retention")} == {"lifecycle"}
    assert {"kpi": "nps", "name": "score"}.items() <= next(row for row in rows if row["name"] == "score").items()
    narrowed = json.loads(as_json.stdout)
    assert sorted(narrowed) == ["experiments", "journeys", "lifecycle"]
    assert [row["journey_id"] for row in narrowed["lifecycle"]["retention"]] == ["winback"]
    assert narrowed["lifecycle"]["nps"]["responses"] == 7, "the shop's figures belong to no journey"
    assert narrowed["journeys"]["journeys"][0]["journey_id"] == "winback"
    assert json.loads(weekly.stdout)["lifecycle"]["granularity"] == "week"


def filled_and_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's database: the known rows and the published journeys; Temporal unreachable."""
    database_url = f"sqlite:///{tmp_path}/cyklo.db"
    fill(database_url)
    monkeypatch.setenv("CYKLO_DATABASE_URL", database_url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    get_settings.cache_clear()
    assert cyklo("publish", str(JOURNEYS)).exit_code == 0


def refusals(answer: httpx.Response) -> list[tuple[str, str]]:
    return [(error["field"], error["message"]) for result in answer.json()["results"] for error in result["errors"]]


@pytest.fixture
async def reporting_api(emulator: ProviderEmulator, tmp_path: Path) -> AsyncIterator[Api]:
    """The API and a worker on the real Temporal dev server (visibility counts), with a shop key
    and a marketer's `reports` key."""
    settings = _api_settings(
        emulator_settings(emulator, database_url=f"sqlite:///{tmp_path}/cyklo.db", task_queue="reports")
    ).model_copy(update={"api_keys": f"{SHOP_KEY}=events;{REPORTS_KEY}=reports"})
    env = await start_dev_server(settings)
    try:
        async with serving(env.client, settings) as api:
            yield api
    finally:
        await env.shutdown()


async def test_the_api_counts_customers_per_stage_now_and_refuses_a_score_of_eleven(reporting_api: Api) -> None:
    api = reporting_api
    now = datetime.now(UTC)
    shop: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "c-prospect": [("signed_up", {"acquisition_cost": 25.0})],
        "c-buyer": [("signed_up", {"acquisition_cost": 35.0}), ("purchase", {"order_id": "o-1", "amount": 120.0})],
    }
    for customer, events in shop.items():
        assert (await api.http.put(f"/v1/customers/{customer}", json=PROFILE, headers=AS_SHOP)).status_code == 200
        for number, (type, properties) in enumerate(events):
            event = {"event_id": f"{customer}-{number}", "customer_id": customer, "type": type, "properties": properties}
            assert (await api.http.post("/v1/events", json=event, headers=AS_SHOP)).status_code == 202
    review = {"event_id": "review-1", "customer_id": "c-buyer", "type": "review_submitted"}

    too_high = await api.http.post("/v1/events", json={**review, "properties": {"score": 11}}, headers=AS_SHOP)
    missing = await api.http.post("/v1/events", json=review, headers=AS_SHOP)
    taken = await api.http.post("/v1/events", json={**review, "properties": {"score": 9}}, headers=AS_SHOP)

    assert too_high.status_code == 422 and refusals(too_high) == [("properties.score", "expected a whole number from 0 to 10")]
    assert missing.status_code == 422 and refusals(missing) == [("properties.score", "required for review_submitted events")]
    assert taken.status_code == 202
    assert (await api.http.get("/v1/reports/lifecycle", headers=AS_SHOP)).status_code == 403
    backwards = await api.http.get("/v1/reports/lifecycle?since=2026-03-01T00:00:00Z&until=2026-02-01T00:00:00Z", headers=AS_MARKETER)
    assert backwards.status_code == 422 and [error["field"] for error in backwards.json()["detail"]] == ["until"]
    unix_seconds = await api.http.get("/v1/reports/lifecycle?until=0.5", headers=AS_MARKETER)
    assert unix_seconds.status_code == 422 and [error["field"] for error in unix_seconds.json()["detail"]] == ["until"]

    async def lifecycle_now() -> dict[str, Any]:
        answer = await api.http.get("/v1/reports/lifecycle", headers=AS_MARKETER)
        assert answer.status_code == 200, answer.text
        return next(row for row in answer.json()["stages_now"] if row["journey_id"] == "lifecycle")

    # The running count and the per-stage counts are separate visibility queries, each
    # eventually consistent: the whole row is waited for, not its stages alone.
    async def counted() -> bool:
        return await lifecycle_now() == {"journey_id": "lifecycle", "running": 2, "by_stage": {"new": 1, "prospect": 1}, "unplaced": 0}

    await api.eventually(counted)
    body = (await api.http.get("/v1/reports/lifecycle", headers=AS_MARKETER)).json()
    flows = {(flow["from_stage"], flow["to_stage"]): flow["customers"] for flow in body["flows"] if flow["journey_id"] == "lifecycle"}
    assert flows == {(None, "prospect"): 2, ("prospect", "new"): 1}, "the journey writes its stage entries"
    assert (body["nps"]["responses"], body["nps"]["promoters"], body["nps"]["score"]) == (1, 1, 100.0)
    assert (body["acquisition"]["customers_acquired"], body["acquisition"]["cac"]) == (2, 30.0)
    assert body["orders"]["average_order_value"] == 120.0
    assert body["cohorts"][-1]["month"] == f"{now:%Y-%m}" and body["cohorts"][-1]["bought"][0] == 1
