"""Experiments through the real path: journeys with splits run on the time-skipping server with
the real worker, activities and database; the report is read from the tables they wrote."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import select
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from typer.testing import CliRunner, Result

from activities.experiments import ExperimentRecorder
from api.app import create_app
from cli.main import app as app_command
from connection import data_converter
from definition.holdout import in_global_holdout
from definition.model import SplitSpec
from definition.program import assign_arm
from payload_encryption import new_payload_key
from reports.experiments import ArmResult, ExperimentsReport, experiments_report
from reports.funnel import Period, journey_funnel
from settings import Settings, get_settings
from simulation.runner import simulate
from storage.database import migrate, session_for
from storage.models import ExperimentAssignment, ExperimentWinner
from tests.conftest import JOURNEYS, make_scenario, messages
from workflows.interface import ArmAssigned, ArmRequest
from workflows.journey import JourneyWorkflow, workflow_runner

START = datetime.fromisoformat("2026-03-02T10:00:00+01:00")

EXPERIMENT = """\
journey: experiment
name: Experiment
entry:
  - {on: signed_up, to: trial}
stages:
  trial:
    flow:
      - split:
          name: subject_test
          holdout: 20
          arms:
            - {name: welcome_arm, weight: 1, flow: [{send: {channel: email, template: welcome}}]}
            - {name: nudge_arm, weight: 1, flow: [{send: {channel: email, template: first_order_nudge}}]}
"""
SPLIT = SplitSpec.model_validate(
    {
        "name": "subject_test",
        "holdout": 20,
        "arms": [{"name": "welcome_arm", "weight": 1}, {"name": "nudge_arm", "weight": 1}],
    }
)

WINNER = """\
journey: contest
name: Contest
entry:
  - {on: signed_up, to: trial}
stages:
  trial:
    flow:
      - split:
          name: subject
          winner: {metric: conversion, min_customers: 1, confidence: 0.8, window: 1d}
          arms:
            - {name: a, weight: 1, flow: [{send: {channel: email, template: welcome}}]}
            - {name: b, weight: 1, flow: [{send: {channel: email, template: first_order_nudge}}]}
"""
CONTEST = SplitSpec.model_validate(
    {"name": "subject", "arms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
)

PROGRAMME = """\
journey: programme
name: Programme
entry:
  - {on: signed_up, to: new}
stages:
  new:
    flow:
      - send: {channel: email, template: welcome}
      - send: {channel: email, template: thank_you, transactional: true}
"""


def _journeys(tmp_path: Path, source: str, name: str) -> Path:
    folder = tmp_path / "journeys"
    folder.mkdir(exist_ok=True)
    if not (folder / "templates").exists():
        shutil.copytree(JOURNEYS / "templates", folder / "templates")
    (folder / f"{name}.yaml").write_text(source)
    return folder


def _customers(journey: str, split: SplitSpec, arm: str | None, count: int, *, skip: int = 0) -> list[str]:
    found = [f"c-{n}" for n in range(2000) if assign_arm(f"c-{n}", journey, split) == arm]
    return found[skip : skip + count]


def _about(moment: datetime, expected: datetime) -> bool:
    """Journey time, which runs on past the moment an event arrived at while the workflow
    task waits for the worker (under a second here, more on a loaded machine)."""
    return timedelta(0) <= moment - expected < timedelta(seconds=10)


def purchase(at: str, amount: float) -> dict[str, object]:
    return {"at": at, "type": "purchase", "properties": {"amount": amount}}


async def test_each_arm_and_the_holdout_count_purchases_within_seven_days_of_the_assignment(
    tmp_path: Path, database_url: str
) -> None:
    journeys = _journeys(tmp_path, EXPERIMENT, "experiment")
    [held] = _customers("experiment", SPLIT, None, 1)
    first, second = _customers("experiment", SPLIT, "welcome_arm", 2)
    [nudged] = _customers("experiment", SPLIT, "nudge_arm", 1)
    stories = {
        held: [purchase("2d", 100)],
        first: [purchase("1d", 250), purchase("3d", 50)],
        second: [purchase("8d", 80)],  # after the 7-day window: not a conversion
        nudged: [],
    }
    for customer, purchases in stories.items():
        scenario = make_scenario({"at": "0s", "type": "signed_up"}, *purchases, until="9d", id=customer)
        await simulate([journeys], scenario, database_url=database_url)

    with session_for(database_url) as session:
        assignments = session.exec(select(ExperimentAssignment)).all()
        report = experiments_report(session)

    assert sorted((row.customer_id, row.arm, row.by_winner) for row in assignments) == sorted(
        [
            (held, None, False),
            (first, "welcome_arm", False),
            (second, "welcome_arm", False),
            (nudged, "nudge_arm", False),
        ]
    )
    assert all(_about(row.assigned_at, START) for row in assignments)
    [split] = report.splits
    assert (split.journey_id, split.split, split.window, split.baseline) == (
        "experiment",
        "subject_test",
        "7d",
        "holdout",
    )
    rows = [
        (arm.arm, arm.customers, arm.converted, arm.conversion_rate, arm.revenue, arm.revenue_per_customer)
        for arm in split.arms
    ]
    assert rows == [
        ("holdout", 1, 1, 1.0, 100.0, 100.0),
        ("welcome_arm", 2, 1, 0.5, 300.0, 150.0),
        ("nudge_arm", 1, 0, 0.0, 0.0, 0.0),
    ]
    _check_statistics(split.arms, base=(1, 1))
    assert report.programme is None
    # Customers of a global control group get no arm's message: no arm counts them.
    with session_for(database_url) as session:
        controlled = experiments_report(session, holdout_percent=50)
    kept = [customer for customer in (held, first, second, nudged) if not in_global_holdout(customer, 50)]
    assert 0 < len(kept) < 4, "the 50 % control takes some of the four, not all or none"
    assert sum(arm.customers for arm in controlled.splits[0].arms) == len(kept)


def _check_statistics(arms: list[ArmResult], base: tuple[int, int]) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

    for arm in arms:
        low, high = proportion_confint(arm.converted, arm.customers, method="wilson")
        assert (arm.conversion_interval.low, arm.conversion_interval.high) == pytest.approx((low, high))
    for arm in arms[1:]:
        counts = (arm.converted, arm.customers, *base)
        low, high = confint_proportions_2indep(*counts, method="newcomb", compare="diff")
        assert arm.difference == pytest.approx(arm.converted / arm.customers - base[0] / base[1])
        assert arm.difference_interval is not None
        assert (arm.difference_interval.low, arm.difference_interval.high) == pytest.approx((low, high))
        _, p_value = proportions_ztest([arm.converted, base[0]], [arm.customers, base[1]])
        assert arm.p_value == pytest.approx(p_value)


async def test_once_the_winner_rule_holds_new_entrants_get_the_winning_arm_and_it_replays(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path}/cyklo.db"
    journeys = _journeys(tmp_path, WINNER, "contest")
    [buyer] = _customers("contest", CONTEST, "a", 1)
    idle, late = _customers("contest", CONTEST, "b", 2)
    for customer in (buyer, idle):
        purchases = [purchase("2h", 120)] if customer == buyer else []
        scenario = make_scenario({"at": "0s", "type": "signed_up"}, *purchases, until="1d", id=customer)
        await simulate([journeys], scenario, database_url=database_url)
    keys = new_payload_key("replay")
    # Three days later both arms have a full 1-day window: a (1 of 1) beats b (0 of 1), p = 0.157 < 0.2.
    scenario = make_scenario(
        {"at": "0s", "type": "signed_up"}, until="1h", id=late, start="2026-03-05T10:00:00+01:00"
    )
    result = await simulate(
        [journeys], scenario, database_url=database_url, record_histories=True, payload_keys=keys
    )

    assert [entry.template for entry in messages(result)] == ["welcome"]  # arm a's message
    assert result.journeys["contest"].experiments == {"subject": "a"}
    with session_for(database_url) as session:
        assignments = {
            row.customer_id: (row.arm, row.by_winner) for row in session.exec(select(ExperimentAssignment))
        }
        [winner] = session.exec(select(ExperimentWinner)).all()
        report = experiments_report(session)
    assert assignments == {buyer: ("a", False), idle: ("b", False), late: ("a", True)}
    assert (winner.journey_id, winner.split, winner.arm) == ("contest", "subject", "a")
    assert _about(winner.decided_at, datetime.fromisoformat("2026-03-05T10:00:00+01:00"))
    assert winner.figures["arms"] == {
        "a": {"customers": 1, "converted": 1, "revenue": 120.0},
        "b": {"customers": 1, "converted": 0, "revenue": 0.0},
    }
    assert winner.figures["p_value"] == pytest.approx(0.1572992070502851)
    [split] = report.splits
    assert split.winner is not None and split.winner.arm == "a"
    assert [(arm.arm, arm.customers) for arm in split.arms] == [("a", 2), ("b", 1)]
    assert "winner: a since 2026-03-05" in report.as_text()
    await _served_as_reported(database_url, report)

    replayer = Replayer(
        workflows=[JourneyWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=data_converter(Settings(payload_keys=keys)),
    )
    for history in result.histories:
        await replayer.replay_workflow(WorkflowHistory.from_json("contest", history))
    assert "record_assignment" in _local_activities(result.histories)


REPORTS_KEY = "reports-reader-key-0001"
EVENTS_KEY = "shop-platform-key-0001"


async def _served_as_reported(database_url: str, report: ExperimentsReport) -> None:
    """The API (scope `reports`) and `cyklo report-experiments` give the same report."""
    settings = Settings(
        database_url=database_url,
        api_keys=f"{REPORTS_KEY}=reports;{EVENTS_KEY}=events",
        payload_keys=new_payload_key("api"),
    )
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://cyklo.test"
    ) as client:
        refused = await client.get(
            "/v1/reports/experiments", headers={"Authorization": f"Bearer {EVENTS_KEY}"}
        )
        served = await client.get(
            "/v1/reports/experiments",
            params={"journey": "contest"},
            headers={"Authorization": f"Bearer {REPORTS_KEY}"},
        )
    assert refused.status_code == 403
    assert served.status_code == 200
    assert ExperimentsReport.model_validate(served.json()) == report

    environment = {"CYKLO_DATABASE_URL": database_url}
    get_settings.cache_clear()  # an earlier command of this process may have read other settings
    try:
        runner = CliRunner()
        as_json = runner.invoke(
            app_command, ["report-experiments", "--journey", "contest", "--json"], env=environment
        )
        as_csv = runner.invoke(app_command, ["report-experiments", "--csv"], env=environment)
        bad = runner.invoke(app_command, ["report-experiments", "--since", "March"], env=environment)
        # `cyklo report` shows the same section beside the funnels and the lifecycle (in a
        # thread: the command runs its own event loop to ask Temporal, as from a shell).
        whole = {**environment, "TEMPORAL_ADDRESS": "127.0.0.1:1"}

        def report_as(*options: str) -> Result:
            return runner.invoke(app_command, ["report", "--journey", "contest", *options], env=whole)

        results, results_csv, results_text = [
            await asyncio.to_thread(report_as, *options) for options in (["--json"], ["--csv"], [])
        ]
    finally:
        get_settings.cache_clear()
    assert as_json.exit_code == 0, as_json.output
    assert ExperimentsReport.model_validate_json(as_json.output) == report
    assert [line.split(",")[:5] for line in as_csv.output.splitlines()[1:]] == [
        ["contest", "subject", "a", "2", "1"],
        ["contest", "subject", "b", "1", "0"],
    ]
    assert bad.exit_code == 2 and "--since" in bad.output and "Traceback" not in bad.output
    assert results.exit_code == 0, results.output
    assert ExperimentsReport.model_validate(json.loads(results.output)["experiments"]) == report
    arms = [row for row in csv.DictReader(io.StringIO(results_csv.output)) if row["section"] == "experiments"]
    columns = ("journey", "split", "arm", "customers", "converted")
    assert [tuple(row[column] for column in columns) for row in arms] == [
        ("contest", "subject", "a", "2", "1"),
        ("contest", "subject", "b", "1", "0"),
    ]
    assert "== Experiments" in results_text.output and "contest / split subject" in results_text.output


def _local_activities(histories: list[str]) -> list[str]:
    """The local activity types in the histories' markers (written by the SDK core, unencoded)."""
    found = []
    for history in histories:
        for event in json.loads(history)["events"]:
            details = event.get("markerRecordedEventAttributes", {}).get("details", {})
            for payload in details.get("data", {}).get("payloads", []):
                found.append(json.loads(base64.b64decode(payload["data"])).get("activity_type", ""))
    return found


async def test_the_global_control_group_gets_no_marketing_message_and_measures_the_programme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CYKLO_GLOBAL_HOLDOUT_PERCENT", "50")
    database_url = f"sqlite:///{tmp_path}/cyklo.db"
    journeys = _journeys(tmp_path, PROGRAMME, "programme")
    ids = [f"c-{n}" for n in range(100)]
    control = [customer for customer in ids if in_global_holdout(customer, 50)][:2]
    treated = [customer for customer in ids if not in_global_holdout(customer, 50)][:3]
    amounts = {
        control[0]: [40.0],
        control[1]: [],
        treated[0]: [300.0, 100.0],
        treated[1]: [50.0],
        treated[2]: [],
    }
    results = {}
    for customer, spent in amounts.items():
        purchases = [purchase(f"{day + 1}d", amount) for day, amount in enumerate(spent)]
        scenario = make_scenario({"at": "0s", "type": "signed_up"}, *purchases, until="5d", id=customer)
        results[customer] = await simulate([journeys], scenario, database_url=database_url)

    statuses = {
        customer: [(entry.template, entry.status) for entry in messages(result)]
        for customer, result in results.items()
    }
    assert statuses[control[0]] == [("welcome", "held_out"), ("thank_you", "sent")]
    assert statuses[treated[0]] == [("welcome", "sent"), ("thank_you", "sent")]
    with session_for(database_url) as session:
        # No `until`: the profiles were created today, the simulated purchases are in March.
        report = experiments_report(session, since=START, holdout_percent=50)
        funnel = journey_funnel(session, "programme", Period(), "PLN")
    welcome, thank_you = funnel.steps
    assert (welcome.template, welcome.sent, welcome.held_out) == ("welcome", 3, 2)
    assert (thank_you.template, thank_you.sent, thank_you.held_out) == ("thank_you", 5, 0)
    programme = report.programme
    assert programme is not None
    assert (programme.control.customers, programme.control.buyers, programme.control.revenue) == (2, 1, 40.0)
    assert (programme.treated.customers, programme.treated.buyers, programme.treated.revenue) == (3, 2, 450.0)
    assert programme.incremental_revenue_per_customer == pytest.approx(round(150.0 - 20.0, 2))
    from scipy import stats

    treated_values, control_values = [400.0, 50.0, 0.0], [40.0, 0.0]
    error = (stats.tvar(treated_values) / 3 + stats.tvar(control_values) / 2) ** 0.5
    z = stats.norm.ppf(0.975)
    assert programme.interval is not None
    assert (programme.interval.low, programme.interval.high) == pytest.approx(
        (130 - z * error, 130 + z * error)
    )


def test_a_retried_assignment_is_recorded_once_and_answers_the_recorded_arm(database_url: str) -> None:
    migrate(database_url)
    recorder = ExperimentRecorder(Settings(database_url=database_url))
    request = ArmRequest(
        journey_id="experiment",
        customer_id="c-1",
        instance="run1",
        split="subject_test",
        arms=["welcome_arm", "nudge_arm"],
        winner=None,
        window=timedelta(days=7),
        hashed_arm="nudge_arm",
        at=START,
    )

    first = recorder.record_assignment(request)
    # A retry after a winner changed nothing: the arm recorded first is the answer.
    again = recorder.record_assignment(request.model_copy(update={"hashed_arm": "welcome_arm"}))

    assert first == again == ArmAssigned(arm="nudge_arm", by_winner=False)
    with session_for(database_url) as session:
        assert len(session.exec(select(ExperimentAssignment)).all()) == 1
