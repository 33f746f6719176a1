"""The journey report: known sends and purchases through the real workflow give exact
conversions, rates and revenue per step, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete
from sqlmodel import col, select

from api.app import create_app
from reports.funnel import Period, journey_funnel, journeys_report
from simulation.runner import simulate
from storage import conversions
from storage.database import session_for
from storage.erasure import erase_customer
from storage.models import ConsentRecord, Conversion, Message
from tests.conftest import REPO, World, make_scenario

PROMO = """\
journey: promo
name: Promo
locales: [pl]
quiet_hours: null
conversion_window: 1d
entry:
  - {on: signed_up, to: welcome}
stages:
  welcome:
    flow:
      - send: {channel: email, template: promo, conversion_window: 2d}
      - wait: 5d
      - send: {channel: email, template: receipt, transactional: true}
      - wait: 1d
      - send: {channel: email, template: later}
"""


@pytest.fixture
def journeys(tmp_path: Path) -> Path:
    folder = tmp_path / "journeys"
    email = folder / "templates" / "pl" / "email"
    email.mkdir(parents=True)
    for template in ("promo", "receipt", "later"):
        (email / f"{template}.subject.txt").write_text(f"{template}\n")
        (email / f"{template}.txt").write_text(f"{template} for {{{{ customer.first_name }}}}\n")
        (email / f"{template}.html").write_text(f"<p>{template}</p>\n")
    (folder / "promo.yaml").write_text(PROMO)
    return folder


def purchase(at: str, order: str, amount: float) -> dict[str, object]:
    return {"at": at, "type": "purchase", "properties": {"order_id": order, "amount": amount}}


async def test_purchases_within_a_window_convert_the_last_message_that_went_out(
    journeys: Path, database_url: str
) -> None:
    ala = make_scenario(
        {"at": "0s", "type": "signed_up"},
        purchase("1d", "o-1", 250),  # 1 day after promo (window 2d): promo's
        purchase("3d", "o-2", 100),  # 3 days after promo: outside its window, credited to none
        purchase("5d1h", "o-3", 80),  # after the transactional receipt: never credited
        purchase("6d2h", "o-4", 40),  # 2 hours after later (the journey's window, 1d): later's
        id="c-ala",
        until="8d",
    )
    # No email consent: promo and later are suppressed; her purchase converts nothing.
    ola = make_scenario(
        {"at": "0s", "type": "signed_up"},
        purchase("1d", "o-5", 500),
        id="c-ola",
        until="8d",
        consents={"email": False, "sms": False},
    )
    await simulate([journeys], ala, database_url=database_url)
    await simulate([journeys], ola, database_url=database_url)
    with session_for(database_url) as session:
        # Ala unsubscribes (List-Unsubscribe) an hour after `later`: within its window.
        session.add(
            ConsentRecord(
                customer_id="c-ala",
                channel="email",
                change="withdrawn",
                origin="sendgrid",
                source="sendgrid unsubscribe",
                at=datetime(2026, 3, 8, 11, 0, tzinfo=UTC),
            )
        )
        session.commit()

    with session_for(database_url) as session:
        windows = {
            (row.customer_id, row.template): row.conversion_window_seconds
            for row in session.exec(select(Message)).all()
        }
        credited = {row.event_id: (row.template, row.amount) for row in session.exec(select(Conversion))}
        funnel = journey_funnel(session, "promo", Period(), "PLN")

    assert windows == {
        ("c-ala", "promo"): 2 * 86400,
        ("c-ala", "receipt"): None,
        ("c-ala", "later"): 86400,
        ("c-ola", "promo"): 2 * 86400,
        ("c-ola", "receipt"): None,
        ("c-ola", "later"): 86400,
    }
    assert credited == {"c-ala-scenario-2": ("promo", 250.0), "c-ala-scenario-5": ("later", 40.0)}
    steps = {step.template: step for step in funnel.steps}
    assert [step.template for step in funnel.steps] == ["promo", "receipt", "later"]
    assert (steps["promo"].sent, steps["promo"].no_consent, steps["promo"].converted) == (1, 1, 1)
    assert (steps["promo"].revenue, steps["promo"].conversion_rate, steps["promo"].revenue_per_sent) == (
        250.0,
        1.0,
        250.0,
    )
    assert (steps["receipt"].sent, steps["receipt"].converted, steps["receipt"].revenue) == (2, 0, 0.0)
    assert (steps["later"].sent, steps["later"].no_consent, steps["later"].converted) == (1, 1, 1)
    assert (steps["later"].revenue, steps["later"].unsubscribed, steps["promo"].unsubscribed) == (40.0, 1, 0)
    assert (funnel.entered, funnel.stage_entries) == (2, {"welcome": 2})
    assert (funnel.sent, funnel.converted, funnel.revenue, funnel.conversion_rate) == (4, 2, 290.0, 0.5)
    assert funnel.revenue_per_sent == 72.5

    with session_for(database_url) as session:
        session.execute(delete(Conversion).where(col(Conversion.event_id) == "c-ala-scenario-2"))
        session.commit()
        assert conversions.rebuild(session) == 2
        assert conversions.rebuild(session) == 2, "rebuilding again changes nothing"
        rebuilt = {row.event_id: (row.template, row.amount) for row in session.exec(select(Conversion))}
        assert rebuilt == credited
        # The period is by send time: Ola's and Ala's promo went out on 2026-03-02, later on 03-08.
        march_2 = journeys_report(
            session, None, Period.of(datetime(2026, 3, 2).date(), datetime(2026, 3, 2).date()), "PLN"
        )
    (only,) = march_2.journeys
    assert [(step.template, step.sent, step.converted, step.revenue) for step in only.steps] == [
        ("promo", 1, 1, 250.0)
    ]
    assert "promo" in march_2.as_text() and "100.0%" in march_2.as_text()
    assert march_2.as_csv().splitlines()[1].startswith("promo,welcome,welcome/0,promo,email,2,1,")


REPORTS_KEY = "reports-key-0123456789"
EVENTS_KEY = "events-key-0123456789"


async def test_the_api_serves_a_journeys_funnel_to_keys_with_the_reports_scope(
    journeys: Path, world: World
) -> None:
    ala = make_scenario({"at": "0s", "type": "signed_up"}, purchase("1d", "o-1", 250), id="c-ala", until="2d")
    await simulate([journeys], ala, database_url=world.settings.database_url)
    settings = world.settings.model_copy(
        update={"api_keys": f"{REPORTS_KEY}=reports;{EVENTS_KEY}=events", "publish_on_start": False}
    )
    app = create_app(settings, client=world.env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cyklo.test") as api:
            as_reports = {"Authorization": f"Bearer {REPORTS_KEY}"}
            refused = await api.get(
                "/v1/reports/journeys/promo", headers={"Authorization": f"Bearer {EVENTS_KEY}"}
            )
            whole = await api.get("/v1/reports/journeys/promo", headers=as_reports)
            later = await api.get("/v1/reports/journeys/promo?since=2026-03-03", headers=as_reports)
            unknown = await api.get("/v1/reports/journeys/nope", headers=as_reports)

    assert (refused.status_code, unknown.status_code) == (403, 404)
    body = whole.json()
    promo = next(step for step in body["steps"] if step["template"] == "promo")
    assert (promo["sent"], promo["converted"], promo["revenue"], promo["conversion_rate"]) == (
        1,
        1,
        250.0,
        1.0,
    )
    assert (body["entered"], body["revenue"], body["currency"]) == (1, 250.0, "PLN")
    assert later.json()["steps"] == [], "promo went out on 2026-03-02, before the period"


def cyklo(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    # No Temporal to ask for the customers per stage now: the lifecycle says so and goes on.
    environment = {**os.environ, "CYKLO_DATABASE_URL": database_url, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


async def test_cyklo_report_prints_the_funnel_as_a_table_csv_and_json_and_rebuilds(
    journeys: Path, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path}/report.db"
    ala = make_scenario({"at": "0s", "type": "signed_up"}, purchase("1d", "o-1", 250), id="c-ala", until="2d")
    await simulate([journeys], ala, database_url=database_url)

    table = cyklo(
        database_url, "report", "--journey", "promo", "--since", "2026-03-01", "--until", "2026-03-02"
    )
    rebuilt = cyklo(database_url, "report", "--rebuild", "--csv")
    as_json = cyklo(database_url, "report", "--json")
    wrong = cyklo(database_url, "report", "--since", "March")

    assert table.returncode == 0, table.stderr
    assert "journey promo (from 2026-03-01 00:00 UTC to 2026-03-03 00:00 UTC" in table.stdout
    welcome_row = next(line for line in table.stdout.splitlines() if line.startswith("welcome email promo"))
    assert welcome_row.split()[3:5] == ["1", "0"] and "250.00" in welcome_row and "100.0%" in welcome_row
    assert [line for line in table.stdout.splitlines() if line.startswith("== ")] == [
        "== Journeys",
        "== Experiments",
        "== Lifecycle",
    ]
    assert rebuilt.stderr.strip() == "conversions rebuilt: 1 purchases credited"
    assert rebuilt.stdout.splitlines()[1].startswith(
        "journeys,promo,welcome,welcome/0,promo,email,1,1,0,0,0,0,1,1.0,250.0,"
    )
    rows = list(csv.DictReader(io.StringIO(rebuilt.stdout)))
    assert [
        (row["section"], row["template"], row["sent"]) for row in rows if row["section"] == "journeys"
    ] == [("journeys", "promo", "1")]
    assert "experiments" not in {row["section"] for row in rows}, "no split: no experiment rows"
    whole = json.loads(as_json.stdout)
    assert sorted(whole) == ["experiments", "journeys", "lifecycle"]
    assert whole["journeys"]["journeys"][0]["revenue"] == 250.0
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and "--since" in wrong.stderr


async def test_erasing_a_customer_deletes_the_conversions_made_of_their_purchases(
    journeys: Path, database_url: str
) -> None:
    ala = make_scenario({"at": "0s", "type": "signed_up"}, purchase("1d", "o-1", 250), id="c-ala", until="2d")
    await simulate([journeys], ala, database_url=database_url)
    with session_for(database_url) as session:
        assert [row.amount for row in session.exec(select(Conversion))] == [250.0]
        erase_customer(session, "c-ala")

        assert session.exec(select(Conversion)).all() == []
        assert conversions.rebuild(session) == 0, "a rebuild agrees: her purchases are gone"
