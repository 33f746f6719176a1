"""The HTTP API: auth and scopes, validation that names the field, batches, idempotency, support view."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from definition.schedule import daytime_zone
from tests.conftest import JOURNEYS, World, api_client

EVENTS_KEY = "shop-platform-key-0001"
SUPPORT_KEY = "support-desk-key-00001"
AS_SHOP = {"Authorization": f"Bearer {EVENTS_KEY}"}
AS_SUPPORT = {"Authorization": f"Bearer {SUPPORT_KEY}"}
ALA = {
    "email": "ala@example.com",
    "phone": "601 234 567",
    "first_name": "Ala",
    "locale": "pl",
    # The time-skipping server starts at the real time: a zone where it is daytime keeps
    # the support tests' messages out of quiet hours whenever they run.
    "timezone": daytime_zone(datetime.now(UTC)),
    "consents": {"email": True, "sms": True, "source": "signup form"},
}


@pytest.fixture
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{EVENTS_KEY}=events;{SUPPORT_KEY}=support:read,support:write",
            "max_request_bytes": 200_000,
        }
    )
    async with api_client(world, settings) as client:
        yield client


def signed_up(event_id: str, customer: str = "c-ala") -> dict[str, object]:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "type": "signed_up",
        "occurred_at": "2026-03-02T10:00:00+01:00",
    }


async def test_health_needs_no_key(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).json() == {"status": "ok"}


async def test_every_other_route_needs_a_key_with_the_right_scope(api: httpx.AsyncClient) -> None:
    assert (await api.put("/v1/customers/c-ala", json=ALA)).status_code == 401
    assert (
        await api.put("/v1/customers/c-ala", json=ALA, headers={"Authorization": "Bearer wrong"})
    ).status_code == 401
    assert (await api.put("/v1/customers/c-ala", json=ALA, headers=AS_SUPPORT)).status_code == 403
    assert (await api.get("/v1/customers/c-ala", headers=AS_SHOP)).status_code == 403
    assert (await api.post("/v1/events", json=signed_up("e-0"), headers=AS_SUPPORT)).status_code == 403


async def test_a_refused_request_is_logged_by_route_and_status_never_by_path(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.errors")

    await api.put("/v1/customers/ala@example.com", json=ALA, headers=AS_SHOP)
    await api.get("/v1/customers/c-ala")

    lines = [record.getMessage() for record in caplog.records if record.name == "api.errors"]
    assert lines == [
        "refused PUT /v1/customers/{customer_id}: 422",
        "refused GET /v1/customers/{customer_id}: 401",
    ]


async def test_bad_profile_gets_422_naming_the_field(api: httpx.AsyncClient) -> None:
    answer = await api.put(
        "/v1/customers/c-ala", json={**ALA, "email": "not-an-email", "timezone": "Mars/Base"}, headers=AS_SHOP
    )

    assert answer.status_code == 422
    fields = {problem["field"] for problem in answer.json()["detail"]}
    assert fields == {"email", "timezone"}

    # A consent time without its offset cannot be ordered against the others: refused, not a 500.
    consents = {"email": True, "at": "2026-03-02T10:00:00"}
    answer = await api.put("/v1/customers/c-ala", json={**ALA, "consents": consents}, headers=AS_SHOP)

    assert answer.status_code == 422
    assert [problem["field"] for problem in answer.json()["detail"]] == ["consents.at"]


async def test_batch_keeps_good_events_and_names_the_bad_field(api: httpx.AsyncClient, world: World) -> None:
    await api.put("/v1/customers/c-ala", json=ALA, headers=AS_SHOP)
    batch = [
        signed_up("e-1"),
        {"event_id": "e-2", "customer_id": "c-ala", "type": "Purchase!"},
        signed_up("e-1"),
    ]

    answer = await api.post("/v1/events", json=batch, headers=AS_SHOP)

    assert answer.status_code == 202
    body = answer.json()
    assert [result["status"] for result in body["results"]] == ["accepted", "rejected", "duplicate"]
    assert body["results"][1]["errors"][0]["field"] == "type"
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, 1)


async def test_all_rejected_is_422_and_oversized_is_413(api: httpx.AsyncClient) -> None:
    rejected = await api.post(
        "/v1/events",
        json=[{"customer_id": "c-1", "type": "x", "properties": {"email": "a@b.pl"}}],
        headers=AS_SHOP,
    )
    too_big = await api.post(
        "/v1/events",
        content=b"[" + b" " * 300_000 + b"]",
        headers={**AS_SHOP, "Content-Type": "application/json"},
    )
    too_many = await api.post("/v1/events", json=[signed_up(f"e-{n}") for n in range(1001)], headers=AS_SHOP)

    assert rejected.status_code == 422
    assert "personal data" in rejected.json()["results"][0]["errors"][0]["message"]
    assert too_big.status_code == 413
    assert too_many.status_code == 422 and "at most 1000" in too_many.json()["detail"][0]["message"]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/events", "application/json"),
        ("/webhooks/shopify", "application/json"),
        ("/webhooks/woocommerce", "application/json"),
        ("/webhooks/twilio/inbound", "application/x-www-form-urlencoded"),
        ("/v1/import/customers", "application/json"),
    ],
)
async def test_a_chunked_body_past_the_limit_is_413_on_every_route_that_reads_one(
    api: httpx.AsyncClient, path: str, content_type: str
) -> None:
    """A chunked body carries no Content-Length for the middleware to refuse: the limit holds
    as it is read, before any signature, key or field is looked at."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(25):
            yield b" " * 10_000  # 250 KB against the fixture's 200,000 bytes

    answer = await api.post(path, content=chunks(), headers={**AS_SHOP, "Content-Type": content_type})

    assert answer.status_code == 413, answer.text
    assert "over 200000 bytes" in answer.json()["detail"]


async def test_support_sees_stage_messages_and_events_of_one_customer(
    api: httpx.AsyncClient, world: World
) -> None:
    await api.put("/v1/customers/c-ala", json=ALA, headers=AS_SHOP)
    await api.post("/v1/events", json=signed_up("e-10"), headers=AS_SHOP)
    await world.env.sleep(timedelta(minutes=5))

    answer = await api.get("/v1/customers/c-ala", headers=AS_SUPPORT)

    assert answer.status_code == 200
    record = answer.json()
    assert record["profile"]["phone"] == "+48601234567"
    assert record["journeys"]["lifecycle"]["stage"] == "prospect"
    assert record["journeys"]["lifecycle"]["next_wake_reason"] == "wait (prospect/1)"
    assert [(message["template"], message["status"]) for message in record["messages"]] == [
        ("welcome", "sent")
    ]
    assert [event["event_id"] for event in record["events"]] == ["e-10"]
    assert (await api.get("/v1/customers/nobody", headers=AS_SUPPORT)).status_code == 404


async def _enrol(api: httpx.AsyncClient, world: World) -> None:
    await api.put("/v1/customers/c-ala", json=ALA, headers=AS_SHOP)
    await api.post("/v1/events", json=signed_up("e-20"), headers=AS_SHOP)
    await world.env.sleep(timedelta(minutes=5))


async def act(api: httpx.AsyncClient, action: str, **body: object) -> httpx.Response:
    return await api.post(f"/v1/customers/c-ala/journeys/lifecycle/{action}", json=body, headers=AS_SUPPORT)


async def test_support_pauses_and_resumes_a_journey_and_is_recorded(
    api: httpx.AsyncClient, world: World
) -> None:
    await _enrol(api, world)

    paused = await act(api, "pause", by="Ewa", reason="customer asked for a break")
    again = await act(api, "pause", by="Ewa")
    await world.env.sleep(timedelta(days=4))
    while_paused = (await api.get("/v1/customers/c-ala", headers=AS_SUPPORT)).json()
    resumed = await act(api, "resume", by="Ewa")
    await world.env.sleep(timedelta(minutes=5))
    after = (await api.get("/v1/customers/c-ala", headers=AS_SUPPORT)).json()

    assert paused.status_code == 200 and paused.json()["paused"]["by"] == "Ewa"
    assert again.status_code == 409 and "already paused by Ewa" in again.json()["detail"]
    assert [message["template"] for message in while_paused["messages"]] == ["welcome"]
    assert while_paused["journeys"]["lifecycle"]["next_wake_reason"] == "paused by Ewa"
    assert resumed.status_code == 200
    assert [message["template"] for message in after["messages"]] == ["first_order_nudge", "welcome"]
    actions = after["journeys"]["lifecycle"]["support_actions"]
    assert [(item["action"], item["by"]) for item in actions] == [("pause", "Ewa"), ("resume", "Ewa")]


async def test_support_skips_a_wait_moves_a_stage_and_exits(api: httpx.AsyncClient, world: World) -> None:
    await _enrol(api, world)

    skipped = await act(api, "skip_wait")
    await world.env.sleep(timedelta(minutes=5))
    unknown = await act(api, "move_to", stage="vipp")
    moved = await act(api, "move_to", stage="vip", reason="goodwill")
    await world.env.sleep(timedelta(minutes=5))
    exited = await act(api, "exit", reason="asked to stop")
    record = (await api.get("/v1/customers/c-ala", headers=AS_SUPPORT)).json()

    assert skipped.status_code == 200 and skipped.json()["support_actions"][0]["by"] == "key …0001"
    assert unknown.status_code == 409 and "unknown stage 'vipp'" in unknown.json()["detail"]
    assert moved.json()["stage"] == "vip"
    assert exited.json()["exited"] == "exited by key …0001: asked to stop"
    assert [message["template"] for message in record["messages"]] == [
        "vip_welcome",
        "first_order_nudge",
        "welcome",
    ]
    after_exit = await act(api, "resume")
    assert after_exit.status_code == 409 and "the journey has ended" in after_exit.json()["detail"]


async def test_erasure_ends_journeys_deletes_the_profile_and_keeps_an_anonymous_ledger(
    api: httpx.AsyncClient, world: World
) -> None:
    await _enrol(api, world)

    erased = await api.delete("/v1/customers/c-ala", headers=AS_SUPPORT)

    assert erased.status_code == 200 and erased.json()["journeys_ended"] == ["lifecycle"]
    assert (await api.get("/v1/customers/c-ala", headers=AS_SUPPORT)).status_code == 404
    from sqlmodel import select

    from storage.database import session_for
    from storage.models import Message

    with session_for(world.settings.database_url) as session:
        rows = session.exec(select(Message)).all()
    assert [(row.customer_id, row.template, row.status) for row in rows] == [("c-ala", "welcome", "sent")]
    description = await world.env.client.get_workflow_handle("journey:lifecycle:c-ala").describe()
    assert description.status is not None and description.status.name == "TERMINATED"
