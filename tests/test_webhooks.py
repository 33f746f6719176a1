"""Provider webhooks: valid signatures change the ledger and consent; forged or replayed ones nothing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import select

from api.app import create_app
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator
from emulator.signing import new_sendgrid_key, sendgrid_public_key, sign_sendgrid, sign_twilio
from storage import consents
from storage.database import session_for
from storage.models import Customer, Message
from tests.conftest import JOURNEYS, World
from worker import build_worker

KEY = "shop-platform-key-0001"
PUBLIC_URL = "https://cyklo.example.com"
ALA = {
    "email": "ala@example.com",
    "phone": "+48601234567",
    "first_name": "Ala",
    # Daytime wherever the real clock is: the welcome must not wait for quiet hours.
    "timezone": daytime_zone(),
    "consents": {"email": True, "sms": True},
}


class Stack:
    def __init__(
        self, client: httpx.AsyncClient, world: World, signing_key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.client, self.world, self.signing_key = client, world, signing_key

    async def sendgrid(
        self, events: list[dict[str, Any]], *, age: int = 0, key: Any = None
    ) -> httpx.Response:
        body = json.dumps(events).encode()
        timestamp = str(int(time.time()) - age)
        headers = {
            "X-Twilio-Email-Event-Webhook-Signature": sign_sendgrid(key or self.signing_key, timestamp, body),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }
        return await self.client.post("/webhooks/sendgrid", content=body, headers=headers)

    async def twilio(self, path: str, params: dict[str, str], token: str | None = None) -> httpx.Response:
        signature = sign_twilio(token or self.world.settings.twilio_auth_token, PUBLIC_URL + path, params)
        return await self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    def message(self, template: str) -> Message:
        with session_for(self.world.settings.database_url) as session:
            return session.exec(select(Message).where(Message.template == template)).one()

    def messages(self) -> list[Message]:
        with session_for(self.world.settings.database_url) as session:
            return list(session.exec(select(Message).where(Message.customer_id == "c-ala")).all())

    def consent_history(self, channel: str) -> list[tuple[str, str, str | None]]:
        with session_for(self.world.settings.database_url) as session:
            rows = consents.history(session, "c-ala")
        return [(row.change, row.origin, row.source) for row in rows if row.channel == channel]

    def customer(self) -> Customer:
        with session_for(self.world.settings.database_url) as session:
            customer = session.get(Customer, "c-ala")
            assert customer is not None
            return customer


@pytest.fixture
async def stack(world: World) -> AsyncIterator[Stack]:
    signing_key = new_sendgrid_key()
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{KEY}=events",
            "sendgrid_webhook_public_key": sendgrid_public_key(signing_key),
            "public_url": PUBLIC_URL,
        }
    )
    app = create_app(settings, client=world.env.client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor), app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
                headers = {"Authorization": f"Bearer {KEY}"}
                await client.put("/v1/customers/c-ala", json=ALA, headers=headers)
                event = {"event_id": "e-1", "customer_id": "c-ala", "type": "signed_up"}
                assert (await client.post("/v1/events", json=event, headers=headers)).status_code == 202
                await world.env.sleep(timedelta(minutes=1))
                yield Stack(client, world, signing_key)


def sendgrid_event(stack: Stack, kind: str, sg_event_id: str, **extra: Any) -> dict[str, Any]:
    welcome = stack.message("welcome")
    return {
        "event": kind,
        "sg_event_id": sg_event_id,
        "timestamp": int(time.time()),
        "email": "ala@example.com",
        "cyklo_message_id": str(welcome.id),
        "customer_id": "c-ala",
        "journey_id": "lifecycle",
        **extra,
    }


async def test_signed_delivered_then_open_update_the_ledger_and_reach_the_journey(
    stack: Stack, emulator: ProviderEmulator
) -> None:
    delivered = await stack.sendgrid([sendgrid_event(stack, "delivered", "sg-1")])
    opened = await stack.sendgrid([sendgrid_event(stack, "open", "sg-2")])
    await stack.world.env.sleep(timedelta(seconds=5))

    assert (delivered.status_code, opened.status_code) == (204, 204)
    assert stack.message("welcome").status == "opened"
    view = await stack.world.env.client.get_workflow_handle("journey:lifecycle:c-ala").query("state")
    assert view["metrics"]["emails_opened"] == 1


async def test_forged_signature_is_refused_and_changes_nothing(stack: Stack) -> None:
    answer = await stack.sendgrid([sendgrid_event(stack, "delivered", "sg-3")], key=new_sendgrid_key())
    unsigned = await stack.client.post(
        "/webhooks/sendgrid", json=[sendgrid_event(stack, "delivered", "sg-4")]
    )

    assert (answer.status_code, unsigned.status_code) == (403, 403)
    assert stack.message("welcome").status == "sent"


async def test_replayed_old_signature_is_refused_and_a_repeated_event_counts_once(stack: Stack) -> None:
    old = await stack.sendgrid([sendgrid_event(stack, "delivered", "sg-5")], age=3600)
    assert old.status_code == 403
    assert stack.message("welcome").status == "sent"

    for _ in range(2):
        assert (await stack.sendgrid([sendgrid_event(stack, "open", "sg-6")])).status_code == 204
    await stack.world.env.sleep(timedelta(seconds=5))
    view = await stack.world.env.client.get_workflow_handle("journey:lifecycle:c-ala").query("state")
    assert view["metrics"]["emails_opened"] == 1


async def test_hard_bounce_suppresses_email_for_the_customer(stack: Stack) -> None:
    await stack.sendgrid([sendgrid_event(stack, "bounce", "sg-7", type="bounce", reason="550 no such user")])

    assert stack.message("welcome").status == "bounced"
    assert stack.customer().email_suppressed is True
    assert stack.consent_history("email")[-1] == ("suppressed", "sendgrid", "hard bounce or spam report")


async def test_unsubscribe_withdraws_email_consent_and_is_recorded_with_its_source(stack: Stack) -> None:
    await stack.sendgrid([sendgrid_event(stack, "unsubscribe", "sg-8")])

    assert stack.customer().consent_email is False
    assert stack.consent_history("email") == [
        ("granted", "profile", None),
        ("withdrawn", "sendgrid", "sendgrid unsubscribe"),
    ]


async def test_twilio_stop_and_start_change_sms_suppression_only_when_signed(stack: Stack) -> None:
    forged = await stack.twilio(
        "/webhooks/twilio/inbound", {"From": "+48601234567", "Body": "STOP"}, token="wrong"
    )
    assert forged.status_code == 403 and stack.customer().sms_suppressed is False

    stop = await stack.twilio("/webhooks/twilio/inbound", {"From": "+48601234567", "Body": "stop"})
    assert stop.status_code == 200 and "<Response></Response>" in stop.text
    # STOP stops every SMS; the shop's own consent record is left as the shop wrote it.
    assert (stack.customer().consent_sms, stack.customer().sms_suppressed) == (True, True)

    await stack.twilio("/webhooks/twilio/inbound", {"From": "+48601234567", "Body": "START"})
    assert (stack.customer().consent_sms, stack.customer().sms_suppressed) == (True, False)
    assert stack.consent_history("sms") == [
        ("granted", "profile", None),
        ("suppressed", "sms_reply", "SMS STOP"),
        ("lifted", "sms_reply", "SMS START"),
    ]


async def test_start_never_grants_sms_consent_the_profile_did_not_record(stack: Stack) -> None:
    no_sms = {**ALA, "consents": {"email": True, "sms": False, "source": "checkout"}}
    headers = {"Authorization": f"Bearer {KEY}"}
    assert (await stack.client.put("/v1/customers/c-ala", json=no_sms, headers=headers)).status_code == 200

    for word in ("YES", "STOP", "START"):
        await stack.twilio("/webhooks/twilio/inbound", {"From": "+48601234567", "Body": word})
        assert stack.customer().consent_sms is False, word
    assert stack.customer().sms_suppressed is False
    assert stack.consent_history("sms") == [
        ("granted", "profile", None),
        ("withdrawn", "profile", "checkout"),
        ("noted", "sms_reply", "SMS YES: no STOP to lift, consent unchanged"),
        ("suppressed", "sms_reply", "SMS STOP"),
        ("lifted", "sms_reply", "SMS START"),
    ]

    # The customer's first order: the marketing SMS thank-you is not sent, for want of consent.
    order = {
        "event_id": "e-2",
        "customer_id": "c-ala",
        "type": "purchase",
        "properties": {"order_id": "o-1", "amount": 20.0},
    }
    assert (await stack.client.post("/v1/events", json=order, headers=headers)).status_code == 202
    await stack.world.env.sleep(timedelta(minutes=1))
    sms = [message for message in stack.messages() if message.channel == "sms"]
    assert [(m.template, m.status, m.reason) for m in sms] == [
        ("thank_you", "suppressed", "no marketing consent for sms")
    ]


async def test_start_leaves_a_suppression_the_customer_did_not_make_by_sms(stack: Stack) -> None:
    with session_for(stack.world.settings.database_url) as session:
        customer = session.get(Customer, "c-ala")
        assert customer is not None
        customer.sms_suppressed = True  # as an operator's import of a suppression list would
        session.add(customer)
        session.commit()

    await stack.twilio("/webhooks/twilio/inbound", {"From": "+48601234567", "Body": "START"})

    assert stack.customer().sms_suppressed is True
    assert stack.consent_history("sms")[-1] == (
        "noted",
        "sms_reply",
        "SMS START: suppressed by other means, consent unchanged",
    )
