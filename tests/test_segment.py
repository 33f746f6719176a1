"""Segment's own Python library, unchanged, pointed at a running cyklo API by its `host`
setting: identify makes the profile, Order Completed reaches the lifecycle as a purchase and
gets the thank-you, a resent call counts once, and a wrong write key is an error it reports."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from segment.analytics import Client
from segment.analytics.request import APIError

from api.app import create_app
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator
from stack.local import free_port
from tests.conftest import JOURNEYS, World
from worker import build_worker

WRITE_KEY = "segment-write-key-000001"
SUPPORT_KEY = "support-desk-key-00001"
AS_SENDER = (WRITE_KEY, "")
"""Basic auth as Segment takes it: the write key as the user name, no password."""


@dataclass
class Served:
    url: str
    world: World
    emulator: ProviderEmulator
    support: httpx.AsyncClient

    def segment(self, write_key: str = WRITE_KEY, **options: Any) -> Client:
        """The library as a shop configures it, with cyklo for Segment's host."""
        return Client(write_key=write_key, host=f"{self.url}/segment", **options)

    async def record(self, customer_id: str) -> Any:
        answer = await self.support.get(f"/v1/customers/{customer_id}")
        return answer.json() if answer.status_code == 200 else {"status": answer.status_code}


@asynccontextmanager
async def serving(world: World, emulator: ProviderEmulator, **settings_changes: Any) -> AsyncIterator[Served]:
    """The API over real HTTP (the library speaks `requests`), a worker, the emulator."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{SUPPORT_KEY}=support:read",
            "segment_write_keys": f"other-write-key-0000001,{WRITE_KEY}",
            "public_url": url,
            **settings_changes,
        }
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, client=world.env.client), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor):
            serving_task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {SUPPORT_KEY}"}, timeout=10
            ) as support:
                yield Served(url, world, emulator, support)
            server.should_exit = True
            await serving_task


@pytest.fixture
async def cyklo(world: World, emulator: ProviderEmulator) -> AsyncIterator[Served]:
    async with serving(world, emulator) as served:
        yield served


def ala_traits() -> dict[str, Any]:
    return {
        "email": "ala@example.com",
        "firstName": "Ala",
        "phone": "601 234 567",
        # Daytime where she lives whenever the test runs: marketing waits out quiet hours.
        "timezone": daytime_zone(datetime.now(UTC)),
        "consents": {"email": True, "sms": True, "source": "signup form"},
    }


async def test_identify_creates_the_profile_and_a_later_one_changes_only_its_traits(cyklo: Served) -> None:
    segment = cyklo.segment(sync_mode=True)

    await asyncio.to_thread(segment.identify, "c-seg", ala_traits())
    created = (await cyklo.record("c-seg"))["profile"]
    await asyncio.to_thread(segment.identify, "c-seg", {"firstName": "Alicja", "consents": {"sms": False}})
    changed = (await cyklo.record("c-seg"))["profile"]

    assert (created["email"], created["first_name"], created["phone"]) == (
        "ala@example.com",
        "Ala",
        "+48601234567",
    )
    assert (created["consent_email"], created["consent_sms"], created["consent_source"]) == (
        True,
        True,
        "signup form",
    )
    assert (changed["email"], changed["first_name"], changed["timezone"]) == (
        "ala@example.com",
        "Alicja",
        created["timezone"],
    )
    assert (changed["consent_email"], changed["consent_sms"]) == (True, False)


async def test_an_identify_older_than_the_consent_cyklo_holds_does_not_change_it(cyklo: Served) -> None:
    segment = cyklo.segment(sync_mode=True)
    now = datetime.now(UTC)
    await asyncio.to_thread(segment.identify, "c-late", ala_traits(), timestamp=now - timedelta(hours=2))
    await asyncio.to_thread(
        segment.identify, "c-late", {"consents": {"email": False}}, timestamp=now - timedelta(hours=1)
    )

    # The first call's consent, resent (or queued on a phone) after the withdrawal it preceded.
    late = {"consents": {"email": True, "source": "signup form"}}
    await asyncio.to_thread(segment.identify, "c-late", late, timestamp=now - timedelta(hours=2))
    kept = (await cyklo.record("c-late"))["profile"]
    await asyncio.to_thread(segment.identify, "c-late", late, timestamp=now)
    newer = (await cyklo.record("c-late"))["profile"]

    assert (kept["consent_email"], kept["consent_sms"]) == (False, True)
    assert (newer["consent_email"], newer["consent_sms"]) == (True, True)


async def test_order_completed_is_a_purchase_that_gets_the_thank_you_and_counts_once(cyklo: Served) -> None:
    segment = cyklo.segment(sync_mode=True)
    await asyncio.to_thread(segment.identify, "c-buyer", ala_traits())
    order = {
        "order_id": "o-77",
        "revenue": 250.0,
        "total": 265.0,
        "currency": "PLN",
        "products": [{"category": "bags"}],
    }

    for _ in range(2):  # the shop's retry after a timeout: the same messageId
        await asyncio.to_thread(segment.track, "c-buyer", "Order Completed", order, message_id="order-o-77")
    await cyklo.world.env.sleep(timedelta(minutes=5))
    record = await cyklo.record("c-buyer")

    lifecycle = record["journeys"]["lifecycle"]
    assert lifecycle["stage"] == "new"
    assert (lifecycle["metrics"]["orders"], lifecycle["metrics"]["total_spent"]) == (1, 250.0)
    assert [(event["event_id"], event["type"], event["properties"]) for event in record["events"]] == [
        ("order-o-77", "purchase", {"order_id": "o-77", "amount": 250.0, "category": "bags"})
    ]
    assert ("thank_you", "email", "sent") in [
        (message["template"], message["channel"], message["status"]) for message in record["messages"]
    ]
    assert [message.to for message in cyklo.emulator.messages("email")] == ["ala@example.com"]


SHOPS_OWN_MAPPING = """\
# A Polish shop's own tracking plan: its order event under its own name and fields.
events:
  Zamówienie opłacone:
    type: purchase
    properties:
      order_id: numer
      amount: [kwota_netto, kwota]
unmapped: ignore
"""


async def test_a_shops_own_mapping_file_makes_its_own_event_name_a_purchase(
    world: World, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    mapping = tmp_path / "segment.yaml"
    mapping.write_text(SHOPS_OWN_MAPPING, encoding="utf-8")

    async with serving(world, emulator, segment_mapping=mapping) as cyklo:
        segment = cyklo.segment(sync_mode=True)
        await asyncio.to_thread(segment.identify, "c-own", ala_traits())
        order = {"numer": "Z-12", "kwota": 123.0, "kwota_netto": 100.0, "adres": "ul. Polna 1"}
        await asyncio.to_thread(segment.track, "c-own", "Zamówienie opłacone", order, message_id="z-12")
        # Not in this shop's file, and `unmapped: ignore`: the shipped mapping no longer applies.
        await asyncio.to_thread(segment.track, "c-own", "Order Completed", {"total": 5.0}, message_id="oc-1")
        await asyncio.to_thread(segment.track, "c-own", "Product Viewed", message_id="pv-1")
        await cyklo.world.env.sleep(timedelta(minutes=5))
        record = await cyklo.record("c-own")

    assert [(event["event_id"], event["type"], event["properties"]) for event in record["events"]] == [
        ("z-12", "purchase", {"order_id": "Z-12", "amount": 100.0})
    ]
    lifecycle = record["journeys"]["lifecycle"]
    assert (lifecycle["stage"], lifecycle["metrics"]["orders"], lifecycle["metrics"]["total_spent"]) == (
        "new",
        1,
        100.0,
    )


async def test_a_wrong_write_key_is_an_error_the_library_reports_and_nothing_is_kept(cyklo: Served) -> None:
    segment = cyklo.segment("not-a-write-key-000001", sync_mode=True)

    with pytest.raises(APIError) as refused:
        await asyncio.to_thread(segment.identify, "c-nobody", {"email": "nobody@example.com"})

    assert refused.value.status == 401
    assert "unknown write key" in str(refused.value)
    assert await cyklo.record("c-nobody") == {"status": 404}


async def test_a_gzip_batch_from_the_library_keeps_its_good_calls_when_one_is_bad(cyklo: Served) -> None:
    problems: list[Exception] = []
    segment = cyklo.segment(gzip=True, on_error=lambda error, batch: problems.append(error))
    segment.identify("c-batch", ala_traits())
    segment.track("ala@example.com", "Signed Up")  # an email as the id: refused, the rest kept
    segment.track("c-batch", "Signed Up", {"first_name": "Ala"}, message_id="signup-c-batch")
    await asyncio.to_thread(segment.flush)
    await asyncio.to_thread(segment.join)
    await cyklo.world.env.sleep(timedelta(minutes=5))

    record = await cyklo.record("c-batch")
    assert problems == []
    assert [(event["event_id"], event["type"], event["properties"]) for event in record["events"]] == [
        ("signup-c-batch", "signed_up", {})
    ]
    assert record["journeys"]["lifecycle"]["stage"] == "prospect"


async def test_each_call_of_a_batch_gets_its_result_named_by_its_segment_field(cyklo: Served) -> None:
    sent_at = datetime.now(UTC) - timedelta(hours=2)  # the sender's clock runs two hours behind
    calls = [
        {"type": "identify", "messageId": "m-0", "userId": "c-raw", "traits": {"locale": "en"}},
        {
            "type": "track",
            "messageId": "m-1",
            "userId": "c-raw",
            "event": "Checkout Started",
            "properties": {"checkout_id": "k-1", "value": 80, "products": [{}, {}]},
            "timestamp": (sent_at - timedelta(minutes=1)).isoformat(),
        },
        {
            "type": "track",
            "messageId": "m-2",
            "userId": "c-raw",
            "event": "Order Completed",
            "properties": {"total": -5},
        },
        {"type": "page", "messageId": "m-3", "anonymousId": "a-1", "name": "Home"},
        {"type": "group", "messageId": "m-4", "userId": "c-raw", "groupId": "g-1"},
        {"type": "track", "messageId": "m-1", "userId": "c-raw", "event": "Checkout Started"},
    ]
    body = gzip.compress(json.dumps({"batch": calls, "sentAt": sent_at.isoformat()}).encode())

    answer = await cyklo.support.post(
        "/segment/v1/batch",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=AS_SENDER,
    )
    no_key = await cyklo.support.post("/segment/v1/track", json=calls[1], headers={"Authorization": ""})

    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [result["status"] for result in results] == [
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "ignored",
        "duplicate",
    ]
    assert [problem["field"] for result in results[2:4] for problem in result["errors"]] == [
        "properties.total",
        "userId",
    ]
    (checkout,) = (await cyklo.support.get("/v1/customers/c-raw")).json()["events"]
    # A minute before it was sent, on the server's clock: the two hours of skew taken out.
    happened = datetime.fromisoformat(checkout["occurred_at"])
    assert abs(happened - (datetime.now(UTC) - timedelta(minutes=1))) < timedelta(seconds=30)
    assert checkout["properties"] == {"cart_id": "k-1", "value": 80, "items_count": 2}
    assert no_key.status_code == 401


async def test_single_calls_are_taken_as_other_senders_post_them(cyklo: Served) -> None:
    identified = await cyklo.support.post(
        "/segment/v1/identify",
        json={"messageId": "s-1", "userId": "c-one", "traits": {"firstName": "Ola"}},
        auth=AS_SENDER,
    )
    tracked = await cyklo.support.post(
        "/segment/v1/track",
        json={"messageId": "s-2", "userId": "c-one", "event": "Signed Up"},
        auth=AS_SENDER,
    )
    paged = await cyklo.support.post(
        "/segment/v1/page", json={"messageId": "s-3", "userId": "c-one", "name": "Pricing"}, auth=AS_SENDER
    )
    wrong = await cyklo.support.post(
        "/segment/v1/page",
        json={"type": "track", "messageId": "s-4", "userId": "c-one", "event": "X"},
        auth=AS_SENDER,
    )
    record = await cyklo.record("c-one")

    assert [answer.json()["results"][0]["status"] for answer in (identified, tracked, paged, wrong)] == [
        "accepted",
        "accepted",
        "accepted",
        "rejected",
    ]
    assert record["profile"]["first_name"] == "Ola"
    assert sorted((event["event_id"], event["type"]) for event in record["events"]) == [
        ("s-2", "signed_up"),
        ("s-3", "page_viewed"),
    ]
    # A page reaches no journey unless one listens for page_viewed; the signup starts the lifecycle.
    assert list(record["journeys"]) == ["lifecycle"]


async def test_a_gzip_body_is_unzipped_within_the_request_limit(cyklo: Served) -> None:
    zipped = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    # 6 MB of JSON that zips to a few kilobytes: refused once unzipped past CYKLO_MAX_REQUEST_BYTES.
    bomb = gzip.compress(b'{"batch": [], "pad": "' + b" " * 6_000_000 + b'"}')

    too_big = await cyklo.support.post("/segment/v1/batch", content=bomb, headers=zipped, auth=AS_SENDER)
    not_gzip = await cyklo.support.post(
        "/segment/v1/batch", content=b'{"batch": []}', headers=zipped, auth=AS_SENDER
    )

    assert len(bomb) < 10_000
    assert too_big.status_code == 413 and "once unzipped" in too_big.json()["detail"]
    assert not_gzip.status_code == 400 and "not gzip" in not_gzip.json()["detail"]
