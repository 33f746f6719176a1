"""Importing an existing base, for real: files into the database, journeys started on the
time-skipping Temporal server by a real worker, messages through the provider emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, func, select

from bench.imports import run as bench_run
from definition.model import Journey
from definition.schedule import daytime_zone
from ingestion.importer import Counts, import_file, start_customers
from ingestion.imports import BadRow, ImportKind
from publishing import publish_journeys
from routing.events import EventRouter, IncomingEvent
from storage import journey_versions
from storage.database import session_for
from storage.models import ConsentRecord, Conversion, Customer, Event, Message
from tests.conftest import JOURNEYS, World, api_client
from worker import build_worker
from workflows.interface import JourneyResult, JourneyView, workflow_id

NOW = datetime.now(UTC)
# Daytime wherever the time-skipping server's real clock stands: no quiet hours in the way.
ZONE = daytime_zone(NOW)
HEADER = (
    "id,email,first_name,locale,timezone,signed_up_at,consent_email,consent_sms,consent_source,consent_at"
)


def ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat()


CUSTOMERS = "\n".join(
    [
        HEADER,
        f"c-active,active@example.com,Ala,pl,{ZONE},{ago(400)},true,false,checkout,{ago(400)}",
        f"c-vip,vip@example.com,Ola,en,{ZONE},{ago(500)},true,true,signup form,{ago(500)}",
        f"c-lapsed,lapsed@example.com,Jan,pl,{ZONE},{ago(700)},true,false,newsletter,{ago(700)}",
        f"c-bad,not-an-email,Eve,pl,{ZONE},,true,false,,",
        f"c-none,none@example.com,Ewa,pl,{ZONE},{ago(30)},true,false,signup form,{ago(30)}",
    ]
)
ORDERS = "\n".join(
    [
        "order_id,customer_id,amount,currency,occurred_at,category",
        f"o-a1,c-active,120.00,PLN,{ago(50)},shoes",
        f"o-a2,c-active,80.00,PLN,{ago(10)},bags",
        *[f"o-v{day},c-vip,300.00,PLN,{ago(day)},shoes" for day in (5, 40, 90, 150, 300)],
        f"o-bad,c-vip,10.00,EUR,{ago(3)},shoes",
        f"o-l1,c-lapsed,200.00,PLN,{ago(200)},",
    ]
)
IMPORTED = ["c-active", "c-vip", "c-lapsed", "c-none"]


def load(world: World, kind: ImportKind, path: Path) -> tuple[Counts, list[str]]:
    problems: list[BadRow] = []
    counts = import_file(
        world.settings.database_url,
        kind,
        path,
        "PLN",
        on_problem=problems.append,
        on_progress=lambda line: None,
    )
    return counts, [problem.text(path.name) for problem in problems]


def router(world: World) -> EventRouter:
    with session_for(world.settings.database_url) as session:
        journeys = [
            Journey.model_validate_json(text) for text in journey_versions.newest_definitions(session)
        ]
    return EventRouter(world.env.client, world.settings, journeys)


async def view(world: World, journey: str, customer: str) -> JourneyView:
    handle = world.env.client.get_workflow_handle(workflow_id(journey, customer))
    return await handle.query("state", result_type=JourneyView)


def rows(world: World) -> dict[str, int]:
    with session_for(world.settings.database_url) as session:
        return {
            name: session.exec(select(func.count()).select_from(model)).one()
            for name, model in (("customers", Customer), ("events", Event), ("consents", ConsentRecord))
        }


async def test_an_imported_base_enters_by_its_history_without_a_welcome_and_a_second_import_changes_nothing(
    world: World, tmp_path: Path
) -> None:
    publish_journeys(world.settings, [JOURNEYS])
    (tmp_path / "customers.csv").write_text(CUSTOMERS + "\n")
    (tmp_path / "orders.csv").write_text(ORDERS + "\n")

    customers, customer_problems = load(world, ImportKind.CUSTOMERS, tmp_path / "customers.csv")
    orders, order_problems = load(world, ImportKind.ORDERS, tmp_path / "orders.csv")

    assert (customers.loaded, customers.unchanged, customers.bad) == (4, 0, 1)
    assert customer_problems == [
        "customers.csv:5: email: value is not a valid email address: An email address must have an @-sign."
    ]
    assert (orders.loaded, orders.unchanged, orders.bad) == (8, 0, 1)
    assert order_problems == ["orders.csv:9: currency: EUR is not the shop currency PLN"]
    with session_for(world.settings.database_url) as session:
        consents = session.exec(select(ConsentRecord).where(ConsentRecord.customer_id == "c-vip")).all()
        assert sorted((row.channel, row.change, row.source) for row in consents) == [
            ("email", "granted", "signup form"),
            ("sms", "granted", "signup form"),
        ]
        assert {row.at for row in consents} == {datetime.fromisoformat(ago(500))}

    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, world.settings, executor):
            started = await start_customers(router(world), IMPORTED)
            await world.env.sleep(timedelta(hours=1))
            views = {customer: await view(world, "lifecycle", customer) for customer in IMPORTED[:3]}
            none = await world.env.client.get_workflow_handle(
                workflow_id("lifecycle", "c-none"), result_type=JourneyResult
            ).result()
            before = rows(world)

            again = (
                load(world, ImportKind.CUSTOMERS, tmp_path / "customers.csv")[0],
                load(world, ImportKind.ORDERS, tmp_path / "orders.csv")[0],
            )
            restarted = await start_customers(router(world), IMPORTED)
            after = rows(world)

            # A later journey start for a customer with history sees it: the cart reminder's
            # metrics count the imported orders.
            cart = IncomingEvent(
                event_id="k-1", customer_id="c-active", type="cart_abandoned", properties={"cart_id": "k-1"}
            )
            await router(world).route(cart)
            await world.env.sleep(timedelta(minutes=1))
            cart_view = await view(world, "abandoned_cart", "c-active")

    assert (started.started, started.already, started.failed) == (4, 0, 0)
    assert {customer: v.stage for customer, v in views.items()} == {
        "c-active": "active",
        "c-vip": "vip",
        "c-lapsed": "inactive",
    }
    assert [(v.metrics["orders"], v.metrics["total_spent"]) for v in views.values()] == [
        (2, 200.0),
        (5, 1500.0),
        (1, 200.0),
    ]
    assert none.stage is None and none.exited == "imported: no entry matched the customer's history"
    with session_for(world.settings.database_url) as session:
        sent = sorted(session.exec(select(Message.customer_id, Message.template)).all())
        conversions = session.exec(select(func.count()).select_from(Conversion)).one()
        purchases, revenue = session.exec(
            select(func.count(), func.sum(Event.amount)).where(col(Event.type) == "purchase")
        ).one()
    assert sent == [("c-active", "loyalty_welcome"), ("c-lapsed", "we_miss_you"), ("c-vip", "vip_welcome")]
    assert conversions == 0, "imported orders are history: no message is credited with them"
    assert (purchases, revenue) == (8, 1900.0), "the reports' revenue column counts imported orders"

    assert [(counts.loaded, counts.unchanged, counts.bad) for counts in again] == [(0, 4, 1), (0, 8, 1)]
    assert (restarted.started, restarted.already) == (0, 4)
    assert after == before, "a second import writes nothing"
    assert cart_view.stage == "cart"
    assert cart_view.metrics["orders"] == 2


IMPORT_KEY = "shop-import-key-00001"
EVENTS_KEY = "shop-events-key-00001"


@pytest.fixture
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    settings = world.settings.model_copy(
        update={"journeys_dir": JOURNEYS, "api_keys": f"{IMPORT_KEY}=import;{EVENTS_KEY}=events"}
    )
    async with api_client(world, settings) as client:
        yield client


async def test_the_api_imports_chunks_naming_bad_rows_by_the_file_line_and_starts_the_journeys_once(
    api: httpx.AsyncClient, world: World
) -> None:
    headers = {"Authorization": f"Bearer {IMPORT_KEY}"}
    customers = [
        {
            "id": "c-api",
            "email": "api@example.com",
            "timezone": ZONE,
            "consents": {"email": True, "source": "crm"},
        },
        {"id": "c-api-2", "email": "api2@example.com", "locale": "fr"},
    ]
    orders = [
        {"order_id": f"o-api-{n}", "customer_id": "c-api", "amount": 50, "occurred_at": ago(n * 20 + 1)}
        for n in range(2)
    ]

    refused = await api.post(
        "/v1/import/customers", json={"rows": customers}, headers={"Authorization": f"Bearer {EVENTS_KEY}"}
    )
    saved = await api.post(
        "/v1/import/customers", json={"rows": customers, "first_line": 101}, headers=headers
    )
    recorded = await api.post("/v1/import/orders", json={"rows": orders}, headers=headers)
    repeated = await api.post("/v1/import/orders", json={"rows": orders}, headers=headers)
    first = await api.post("/v1/import/start", json={}, headers=headers)  # every customer with a profile
    second = await api.post("/v1/import/start", json={"customer_ids": ["c-api"]}, headers=headers)
    await world.env.sleep(timedelta(minutes=1))

    assert refused.status_code == 403
    assert saved.json() == {
        "loaded": 1,
        "unchanged": 0,
        "bad": 1,
        "problems": [
            {"line": 102, "field": "locale", "message": "unsupported locale 'fr': use one of pl, en"}
        ],
    }
    assert (recorded.json()["loaded"], repeated.json()["loaded"], repeated.json()["unchanged"]) == (2, 0, 2)
    assert first.json() == {"started": 1, "already": 0, "failed": 0, "next_after": None}
    assert second.json() == {"started": 0, "already": 1, "failed": 0, "next_after": None}
    journey = await view(world, "lifecycle", "c-api")
    assert (journey.stage, journey.metrics["orders"]) == ("active", 2)


def test_the_command_prints_each_bad_row_by_file_and_line_and_the_counts(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text(CUSTOMERS + "\n")
    environment = {**os.environ, "CYKLO_DATABASE_URL": f"sqlite:///{tmp_path}/cyklo.db"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "import", "customers", "customers.csv"],
            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    first, second = run(), run()

    # The good rows load and the exit code says some lines are left to fix.
    assert (first.returncode, first.stdout) == (1, "customers: 4 loaded, 0 unchanged, 1 bad\n")
    assert "customers.csv:5: email: value is not a valid email address" in first.stderr
    assert "Traceback" not in first.stderr
    assert second.stdout == "customers: 0 loaded, 4 unchanged, 1 bad\n"


def test_the_benchmark_counts_every_generated_row_and_its_second_run_writes_nothing(tmp_path: Path) -> None:
    figures = bench_run(customers=50, orders=300, folder=tmp_path)

    # One bad row in a thousand of each, the first at numbers 7 and 3.
    assert figures["customers"] | {"seconds": 0} == {"seconds": 0, "loaded": 49, "unchanged": 0, "bad": 1}
    assert figures["orders"] | {"seconds": 0} == {"seconds": 0, "loaded": 299, "unchanged": 0, "bad": 1}
    assert (figures["customers_again"]["loaded"], figures["customers_again"]["unchanged"]) == (0, 49)
    assert (figures["orders_again"]["loaded"], figures["orders_again"]["unchanged"]) == (0, 299)
