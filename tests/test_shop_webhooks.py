"""Shop webhooks end to end: a real API, worker and Temporal server, documented payloads
signed as Shopify and WooCommerce sign them, posted over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from ingestion.signatures import sign
from storage import consents
from storage.database import session_for
from storage.models import Customer, Event
from tests.conftest import JOURNEYS, World
from tests.shop_payloads import documented
from worker import build_worker

SHOPIFY_SECRET = "shpss_new_client_secret"
OLD_SHOPIFY_SECRET = "shpss_old_client_secret"
WOO_SECRET = "woo webhook secret, with a comma"
BOB = "706405506930370084"


class Shop:
    def __init__(self, client: httpx.AsyncClient, world: World) -> None:
        self.client, self.world = client, world

    async def shopify(
        self,
        topic: str,
        payload: dict[str, Any],
        *,
        webhook_id: str = "wh-1",
        secret: str | None = SHOPIFY_SECRET,
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": "cyklo-test.myshopify.com",
            "X-Shopify-API-Version": "2026-07",
            "X-Shopify-Webhook-Id": webhook_id,
        }
        if secret is not None:
            headers["X-Shopify-Hmac-Sha256"] = sign(secret, body)
        return await self.client.post("/webhooks/shopify", content=body, headers=headers)

    async def woocommerce(
        self, topic: str, payload: dict[str, Any], *, secret: str | None = WOO_SECRET, delivery: str = "d-1"
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        resource, event = topic.split(".")
        headers = {
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": "https://shop.example.com/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-ID": "7",
            "X-WC-Webhook-Delivery-ID": delivery,
        }
        if secret is not None:
            headers["X-WC-Webhook-Signature"] = sign(secret, body)
        return await self.client.post("/webhooks/woocommerce", content=body, headers=headers)

    def events(self, customer_id: str) -> list[Event]:
        with session_for(self.world.settings.database_url) as session:
            return list(session.exec(select(Event).where(Event.customer_id == customer_id)).all())

    def customer(self, customer_id: str) -> Customer | None:
        with session_for(self.world.settings.database_url) as session:
            return session.get(Customer, customer_id)

    async def journey(self, customer_id: str, journey: str = "lifecycle") -> dict[str, Any]:
        await self.world.env.sleep(timedelta(seconds=5))
        handle = self.world.env.client.get_workflow_handle(f"journey:{journey}:{customer_id}")
        state: dict[str, Any] = await handle.query("state")
        return state


@pytest.fixture
async def shop(world: World) -> AsyncIterator[Shop]:
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "shopify_webhook_secrets": f"{OLD_SHOPIFY_SECRET}, {SHOPIFY_SECRET}",
            "woocommerce_webhook_secret": WOO_SECRET,
        }
    )
    app = create_app(settings, client=world.env.client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor), app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://cyklo.example.com") as client:
                yield Shop(client, world)


def now() -> str:
    return datetime.now(UTC).isoformat()


def paid_order(**changes: Any) -> dict[str, Any]:
    order = documented("shopify/order", financial_status="paid", processed_at=now(), **changes)
    order["customer"] = {**order["customer"], "id": int(BOB)}
    return order


def checkout(**changes: Any) -> dict[str, Any]:
    """Bob's checkout, not completed, as Shopify documents it, last changed now."""
    at = now()
    started = documented("shopify/checkout", created_at=at, updated_at=at, **changes)
    started["customer"] = {**started["customer"], "id": int(BOB)}
    return started


async def test_a_signed_shopify_order_is_one_purchase_in_the_lifecycle_journey(shop: Shop) -> None:
    signed_up = await shop.shopify(
        "customers/create", documented("shopify/customers_create", created_at=now())
    )
    created = await shop.shopify("orders/create", paid_order(), webhook_id="wh-2")
    again = await shop.shopify("orders/create", paid_order(), webhook_id="wh-2")
    paid = await shop.shopify("orders/paid", paid_order(), webhook_id="wh-3")

    assert [answer.status_code for answer in (signed_up, created, again, paid)] == [200, 200, 200, 200]
    assert [result["status"] for result in created.json()["events"]] == ["accepted"]
    assert created.json()["profile_saved"] is False  # customers/create's profile stays
    assert [result["status"] for result in again.json()["events"]] == ["duplicate"]
    assert [result["status"] for result in paid.json()["events"]] == ["duplicate"]
    state = await shop.journey(BOB)
    assert state["stage"] == "new"
    assert (state["metrics"]["orders"], state["metrics"]["total_spent"]) == (1, 404.95)
    purchases = [event for event in shop.events(BOB) if event.type == "purchase"]
    assert [(event.event_id, event.properties["amount"]) for event in purchases] == [
        ("shopify:order:820982911946154508", 404.95)
    ]


async def test_an_old_secret_still_signs_during_a_rotation_and_the_order_brings_a_profile(shop: Shop) -> None:
    answer = await shop.shopify("orders/paid", paid_order(), secret=OLD_SHOPIFY_SECRET)

    assert answer.status_code == 200 and answer.json()["events"][0]["status"] == "accepted"
    # Bob was a customer before cyklo: the order's copy of him is his profile, without consent.
    bob = shop.customer(BOB)
    assert bob is not None and answer.json()["profile_saved"]
    assert (bob.email, bob.first_name, bob.consent_email, bob.consent_sms) == (
        "john@example.com",
        "John",
        False,
        False,
    )
    assert (await shop.journey(BOB))["stage"] == "new"


async def test_a_forged_or_unsigned_shopify_webhook_is_refused_and_records_nothing(shop: Shop) -> None:
    forged = await shop.shopify("orders/paid", paid_order(), secret="not the app's secret")
    unsigned = await shop.shopify("customers/create", documented("shopify/customers_create"), secret=None)
    tampered = paid_order()
    body = json.dumps(tampered).encode()
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": sign(SHOPIFY_SECRET, body + b" ")}
    altered = await shop.client.post("/webhooks/shopify", content=body, headers=headers)

    assert (forged.status_code, unsigned.status_code, altered.status_code) == (401, 401, 401)
    assert shop.events(BOB) == [] and shop.customer(BOB) is None


async def test_a_shopify_checkout_is_one_abandoned_cart_however_often_it_comes(shop: Shop) -> None:
    started = checkout()
    created = await shop.shopify("checkouts/create", started, webhook_id="wh-c1")
    # Shopify sends checkouts/update of the same checkout as it creates it, and retries a delivery.
    updated = await shop.shopify("checkouts/update", started, webhook_id="wh-c2")
    retried = await shop.shopify("checkouts/update", started, webhook_id="wh-c2")

    assert [answer.status_code for answer in (created, updated, retried)] == [200, 200, 200]
    assert [result["status"] for result in created.json()["events"]] == ["accepted"]
    assert [result["status"] for result in updated.json()["events"]] == ["duplicate"]
    assert [result["status"] for result in retried.json()["events"]] == ["duplicate"]
    (cart,) = shop.events(BOB)
    assert cart.event_id == f"shopify:checkout:123123123:{started['updated_at']}"
    assert cart.type == "cart_abandoned"
    assert cart.properties == {"cart_id": "123123123", "value": 421.88, "items_count": 2}
    assert (await shop.journey(BOB, "abandoned_cart"))["stage"] == "cart"

    # Bob drops an item: the newer checkout is the cart reminded about, in the same journey.
    changed = checkout(line_items=started["line_items"][:1], total_price="210.94")
    update = await shop.shopify("checkouts/update", changed, webhook_id="wh-c3")
    completed = await shop.shopify(
        "checkouts/update", {**changed, "completed_at": now(), "updated_at": now()}, webhook_id="wh-c4"
    )

    assert [result["status"] for result in update.json()["events"]] == ["accepted"]
    assert completed.json()["status"] == "ignored" and "completed" in completed.json()["reason"]
    carts = sorted((event.properties["value"], event.properties["items_count"]) for event in shop.events(BOB))
    assert carts == [(210.94, 1), (421.88, 2)]
    assert (await shop.journey(BOB, "abandoned_cart"))["stage"] == "cart"


async def test_an_older_shopify_checkout_state_arriving_late_does_not_restart_the_cart(shop: Shop) -> None:
    older = checkout()
    newer = checkout(line_items=older["line_items"][:1], total_price="210.94")
    assert newer["updated_at"] > older["updated_at"]

    taken = await shop.shopify("checkouts/update", newer, webhook_id="wh-c2")
    # Shopify's retry of the first state, after the newer one.
    late = await shop.shopify("checkouts/create", older, webhook_id="wh-c1")

    assert [result["status"] for result in taken.json()["events"]] == ["accepted"]
    assert (late.status_code, late.json()["status"], late.json()["events"]) == (200, "ignored", [])
    assert "older than" in late.json()["reason"]
    assert [(event.properties["value"], event.properties["items_count"]) for event in shop.events(BOB)] == [
        (210.94, 1)
    ]
    assert (await shop.journey(BOB, "abandoned_cart"))["stage"] == "cart"


async def test_a_shopify_customer_is_saved_with_the_consent_its_topics_bring(shop: Shop) -> None:
    email = documented("shopify/customers_email_marketing_consent_update")
    email["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "confirmed_opt_in",
        "consent_updated_at": "2026-11-30T10:00:00+01:00",
    }
    sms = documented("shopify/customers_marketing_consent_update", phone="+48601234567")
    sms["sms_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-11-30T10:05:00+01:00",
        "consent_collected_from": "shopify",
    }

    # The consent arrives before the customer: Shopify does not promise an order.
    consent_answer = await shop.shopify("customers_email_marketing_consent/update", email)
    customer_answer = await shop.shopify(
        "customers/create", documented("shopify/customers_create", phone="+48601234567", created_at=now())
    )
    sms_answer = await shop.shopify("customers_marketing_consent/update", sms)

    assert [a.json()["status"] for a in (consent_answer, customer_answer, sms_answer)] == ["applied"] * 3
    bob = shop.customer(BOB)
    assert bob is not None
    assert (bob.email, bob.first_name, bob.phone) == ("bob@biller.com", "Bob", "+48601234567")
    assert (bob.consent_email, bob.consent_sms) == (True, True)
    assert bob.consent_source is not None and "sms subscribed (single_opt_in, shopify)" in bob.consent_source
    with session_for(shop.world.settings.database_url) as session:
        history = [(row.channel, row.change, row.at) for row in consents.history(session, BOB)]
    assert [(channel, change) for channel, change, _ in history] == [("email", "granted"), ("sms", "granted")]
    assert history[0][2].replace(tzinfo=UTC) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert (await shop.journey(BOB))["stage"] == "prospect"


def email_consent(state: str, at: str) -> dict[str, Any]:
    """Bob's email consent as the consent topic documents it, changed in Shopify at `at`."""
    payload = documented("shopify/customers_email_marketing_consent_update")
    payload["email_marketing_consent"] = {
        "state": state,
        "opt_in_level": "single_opt_in",
        "consent_updated_at": at,
    }
    return payload


async def test_a_late_shopify_subscribe_never_undoes_a_newer_unsubscribe(shop: Shop) -> None:
    topic = "customers_email_marketing_consent/update"
    unsubscribed = await shop.shopify(topic, email_consent("unsubscribed", "2026-11-30T11:00:00+01:00"))
    # Shopify retries the subscribe of an hour before, after the unsubscribe it preceded.
    late = await shop.shopify(
        topic, email_consent("subscribed", "2026-11-30T10:00:00+01:00"), webhook_id="wh-2"
    )

    assert [answer.status_code for answer in (unsubscribed, late)] == [200, 200]
    assert (late.json()["status"], late.json()["consents_changed"]) == ("applied", 0)
    assert "newer change" in late.json()["warnings"][0]
    bob = shop.customer(BOB)
    assert bob is not None and not bob.consent_email
    assert bob.consent_source is not None and "email unsubscribed" in bob.consent_source

    # Bob subscribes again later: that is the newest, and it counts.
    again = await shop.shopify(
        topic, email_consent("subscribed", "2026-11-30T12:00:00+01:00"), webhook_id="wh-3"
    )

    assert again.json()["consents_changed"] == 1
    bob = shop.customer(BOB)
    assert bob is not None and bob.consent_email
    with session_for(shop.world.settings.database_url) as session:
        history = [(row.change, row.at) for row in consents.history(session, BOB)]
    assert history == [("granted", datetime(2026, 11, 30, 11, 0, tzinfo=UTC))]


async def test_a_shopify_erasure_request_erases_the_customer(shop: Shop) -> None:
    await shop.shopify("customers/create", documented("shopify/customers_create", created_at=now()))
    assert (await shop.journey(BOB))["stage"] == "prospect"
    request = documented("shopify/customers_redact")
    request["customer"] = {**request["customer"], "id": int(BOB)}

    answer = await shop.shopify("customers/redact", request)

    assert answer.status_code == 200 and answer.json()["erased"] is True
    assert shop.customer(BOB) is None and shop.events(BOB) == []


async def test_woocommerce_pings_then_a_customer_and_a_paid_order_count_once(shop: Shop) -> None:
    ping = await shop.client.post(
        "/webhooks/woocommerce",
        content=b"webhook_id=7",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    customer = await shop.woocommerce(
        "customer.created", documented("woocommerce/customer", date_created_gmt=now()[:19])
    )
    order = documented("woocommerce/order", customer_id=25, date_paid_gmt=now()[:19])
    pending = await shop.woocommerce("order.created", {**order, "status": "pending"})
    processing = await shop.woocommerce("order.updated", order, delivery="d-2")
    completed = await shop.woocommerce("order.updated", {**order, "status": "completed"}, delivery="d-3")
    forged = await shop.woocommerce("order.updated", {**order, "id": 728}, secret="someone else's")

    assert ping.status_code == 200
    assert [a.json()["status"] for a in (customer, pending, processing)] == ["applied", "ignored", "applied"]
    assert [result["status"] for result in completed.json()["events"]] == ["duplicate"]
    assert forged.status_code == 401
    saved = shop.customer("25")
    assert saved is not None and (saved.email, saved.consent_email) == ("john.doe@example.com", False)
    state = await shop.journey("25")
    assert (state["stage"], state["metrics"]["orders"], state["metrics"]["total_spent"]) == ("new", 1, 29.35)


async def test_an_unsigned_woocommerce_delivery_is_refused_and_records_nothing(shop: Shop) -> None:
    order = documented("woocommerce/order", customer_id=25, date_paid_gmt=now()[:19])
    customer = documented("woocommerce/customer", date_created_gmt=now()[:19])

    unsigned_order = await shop.woocommerce("order.created", order, secret=None)
    unsigned_customer = await shop.woocommerce("customer.created", customer, secret=None, delivery="d-2")
    # Without its topic header either, a JSON body is still no ping: only `webhook_id=N` is,
    # and only without a topic.
    bare = await shop.client.post("/webhooks/woocommerce", json=order)
    topical_ping = await shop.client.post(
        "/webhooks/woocommerce", content=b"webhook_id=7", headers={"X-WC-Webhook-Topic": "order.created"}
    )
    empty = await shop.client.post(
        "/webhooks/woocommerce",
        json=order,
        headers={"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Signature": ""},
    )

    answers = (unsigned_order, unsigned_customer, bare, topical_ping, empty)
    assert [answer.status_code for answer in answers] == [401] * 5
    assert all("X-WC-Webhook-Signature" in answer.json()["detail"] for answer in answers)
    assert shop.events("25") == [] and shop.customer("25") is None


async def test_no_secret_configured_refuses_everything_even_the_ping(world: World) -> None:
    app = create_app(world.settings.model_copy(update={"journeys_dir": JOURNEYS}), client=world.env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://cyklo.example.com") as client:
            body = json.dumps(paid_order()).encode()
            shopify = await client.post(
                "/webhooks/shopify",
                content=body,
                headers={"X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": sign("", body)},
            )
            ping = await client.post("/webhooks/woocommerce", content=b"webhook_id=7")

    assert (shopify.status_code, ping.status_code) == (401, 401)
    assert "CYKLO_SHOPIFY_WEBHOOK_SECRETS" in shopify.json()["detail"]
