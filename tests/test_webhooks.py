"""Provider webhooks: valid signatures change the ledger and consent; forged or replayed ones nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
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
    "timezone": daytime_zone(datetime.now(UTC)),
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


@asynccontextmanager
async def running_stack(world: World, *, settled: bool = True, **overrides: Any) -> AsyncIterator[Stack]:
    """Worker and API for the test's world; Ala has signed up and her welcome was sent (or
    tried), or, unless `settled`, is being sent."""
    signing_key = new_sendgrid_key()
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{KEY}=events",
            "sendgrid_webhook_public_key": sendgrid_public_key(signing_key),
            "public_url": PUBLIC_URL,
            **overrides,
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
                if settled:
                    await world.env.sleep(timedelta(minutes=1))
                yield Stack(client, world, signing_key)


@pytest.fixture
async def stack(world: World) -> AsyncIterator[Stack]:
    async with running_stack(world) as running:
        yield running


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


async def _signed_raw(stack: Stack, body: bytes) -> httpx.Response:
    timestamp = str(int(time.time()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": sign_sendgrid(stack.signing_key, timestamp, body),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    return await stack.client.post("/webhooks/sendgrid", content=body, headers=headers)


async def test_signed_batch_with_malformed_items_skips_each_and_applies_the_rest(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 8, item 9: these shapes answered 500 and stopped every item after them.
    batch: list[Any] = [
        sendgrid_event(stack, "open", "sg-bad-1", timestamp="abc"),
        sendgrid_event(stack, "open", "sg-bad-2", customer_id="c" * 300),
        "not an object",
        sendgrid_event(stack, "delivered", "sg-ok-1"),
        sendgrid_event(stack, "open", "sg-bad-3", cyklo_message_id="9" * 5000),
        sendgrid_event(stack, "bounce", "sg-bad-4", reason="550 \x00 no"),
        sendgrid_event(stack, "open", "sg-bad-5", timestamp=10**20),
        sendgrid_event(stack, "open", "sg-bad-6", journey_id="\udcff"),
        {key: value for key, value in sendgrid_event(stack, "open", "-").items() if key != "sg_event_id"},
        sendgrid_event(stack, "open", "sg-ok-2"),
        {"event": "delivered", "sg_event_id": "sg-not-ours", "email": "bob@example.com"},
    ]

    answer = await _signed_raw(stack, json.dumps(batch).encode())
    await stack.world.env.sleep(timedelta(seconds=5))

    assert answer.status_code == 200
    report = answer.json()
    assert (report["applied"], report["ignored"], report["failed"]) == (2, 1, 0)
    skipped = {item["index"]: item for item in report["skipped"]}
    fields = {index: {error["field"] for error in item["errors"]} for index, item in skipped.items()}
    assert fields == {
        0: {"timestamp"},
        1: {"customer_id"},
        2: {"item"},
        4: {"cyklo_message_id"},
        5: {"reason"},
        6: {"timestamp"},
        7: {"journey_id"},
        8: {"sg_event_id"},
    }
    assert skipped[0]["event_id"] == "sg-bad-1" and skipped[2]["event_id"] is None
    # The good items around the bad ones were applied: delivered, then opened and counted once.
    assert stack.message("welcome").status == "opened"
    assert stack.customer().email_suppressed is False, "the malformed bounce was not applied"
    view = await stack.world.env.client.get_workflow_handle("journey:lifecycle:c-ala").query("state")
    assert view["metrics"]["emails_opened"] == 1
    # Recorded in the log by id and field, never with the address or the values.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "sg-bad-1" in logged and "timestamp" in logged
    assert "@example.com" not in logged + answer.text and "cccc" not in logged + answer.text


async def test_the_same_batch_sent_again_changes_nothing_and_still_answers_2xx(stack: Stack) -> None:
    batch = [sendgrid_event(stack, "open", "sg-r1"), sendgrid_event(stack, "open", "sg-r2", timestamp="x")]
    first = await stack.sendgrid(batch)
    again = await stack.sendgrid(batch)
    await stack.world.env.sleep(timedelta(seconds=5))

    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["applied"], again.json()["duplicates"]) == (1, 1)
    view = await stack.world.env.client.get_workflow_handle("journey:lifecycle:c-ala").query("state")
    assert view["metrics"]["emails_opened"] == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[" * 100_000, b"{" * 5_000, b'{"event": "open"}', b"\xff\xfe"],
    ids=["not-json", "deep-list", "deep-object", "not-a-list", "not-utf8"],
)
async def test_a_signed_body_that_is_no_batch_is_recorded_and_answered_2xx(stack: Stack, body: bytes) -> None:
    answer = await _signed_raw(stack, body)

    if body == b"\xff\xfe":
        # The signature covers text: bytes that are no UTF-8 were never signed by SendGrid.
        assert answer.status_code == 403
        return
    assert answer.status_code == 200
    assert answer.json()["skipped"] == [
        {
            "index": 0,
            "event_id": None,
            "errors": [{"field": "body", "message": "expected a JSON list of events"}],
        }
    ]
    assert stack.message("welcome").status == "sent"


@pytest.fixture
async def lost_answer(world: World, emulator: ProviderEmulator) -> AsyncIterator[Stack]:
    """SendGrid took Ala's welcome, but its answer never came: the ledger says outcome unknown."""
    emulator.hold("email")
    try:
        async with running_stack(world, provider_timeout_seconds=1) as running:
            await _until(lambda: running.message("welcome").status == "failed")
            emulator.release()
            yield running
    finally:
        emulator.release()


async def _until(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_a_delivery_webhook_repairs_an_email_whose_outcome_was_unknown(
    lost_answer: Stack, emulator: ProviderEmulator
) -> None:
    before = lost_answer.message("welcome")
    assert before.reason is not None and before.reason.startswith("outcome unknown")
    assert before.provider_message_id is None
    [taken] = emulator.messages("email")

    # What SendGrid sends back: the custom args the send attached, and its own message id.
    delivered = {
        "event": "delivered",
        "sg_event_id": "sg-repair-1",
        "sg_message_id": f"{taken.provider_id}.filter0001.1.0",
        "timestamp": int(time.time()),
        "email": taken.to,
        "response": "250 OK",
        **taken.custom_args,
    }
    answer = await lost_answer.sendgrid([delivered])
    opened = {**delivered, "event": "open", "sg_event_id": "sg-repair-2"}
    del opened["response"]
    opened_answer = await lost_answer.sendgrid([opened])

    assert (answer.status_code, opened_answer.status_code) == (204, 204)
    repaired = lost_answer.message("welcome")
    assert repaired.status == "opened"
    assert repaired.reason == "repaired by webhook: sendgrid delivered: 250 OK (outcome unknown before)"
    assert repaired.provider_message_id == taken.provider_id


async def test_a_bounce_settles_an_unknown_email_as_bounced_and_a_late_delivered_cannot_undo_it(
    lost_answer: Stack, emulator: ProviderEmulator
) -> None:
    [taken] = emulator.messages("email")
    bounce = {"event": "bounce", "sg_event_id": "sg-b", "type": "bounce", "reason": "550 unknown user"}
    await lost_answer.sendgrid([{**bounce, "timestamp": int(time.time()), **taken.custom_args}])
    late = {"event": "delivered", "sg_event_id": "sg-d", "timestamp": int(time.time()), **taken.custom_args}
    await lost_answer.sendgrid([late])

    settled = lost_answer.message("welcome")
    assert settled.status == "bounced"
    assert settled.reason is not None and settled.reason.startswith("repaired by webhook: sendgrid bounce")


async def test_malformed_signed_twilio_status_callbacks_are_skipped_with_2xx(stack: Stack) -> None:
    welcome = stack.message("welcome")
    bad = [
        {"MessageSid": "SM" + "a" * 300, "MessageStatus": "delivered"},
        {"MessageSid": "SM\x00" + "a" * 31, "MessageStatus": "delivered"},
        {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered", "ErrorCode": "abc"},
        {"MessageStatus": "failed"},
    ]
    for params in bad:
        answer = await stack.twilio("/webhooks/twilio/status", params)
        assert answer.status_code == 200, params
        assert answer.json()["skipped"][0]["errors"], params
    unknown_sid = await stack.twilio(
        "/webhooks/twilio/status", {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered"}
    )
    forged = await stack.twilio(
        "/webhooks/twilio/status", {"MessageSid": "SM" + "b" * 32, "MessageStatus": "failed"}, token="wrong"
    )

    assert (unknown_sid.status_code, forged.status_code) == (204, 403)
    assert stack.message("welcome").status == welcome.status


async def test_an_outage_answers_503_so_sendgrid_sends_the_batch_again_and_nothing_is_lost(
    stack: Stack,
) -> None:
    from sqlalchemy import text

    from storage.database import engine_for, normalise_url

    engine = engine_for(normalise_url(stack.world.settings.database_url))
    batch = [sendgrid_event(stack, "open", "sg-o1"), sendgrid_event(stack, "open", "sg-o2", timestamp="x")]
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_away"))  # the events store is out
    try:
        during = await stack.sendgrid(batch)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE events_away RENAME TO events"))
    after = await stack.sendgrid(batch)
    await stack.world.env.sleep(timedelta(seconds=5))

    assert during.status_code == 503 and during.headers["Retry-After"]
    assert (during.json()["failed"], len(during.json()["skipped"])) == (1, 1)
    assert (after.status_code, after.json()["applied"]) == (200, 1)
    view = await stack.world.env.client.get_workflow_handle("journey:lifecycle:c-ala").query("state")
    assert view["metrics"]["emails_opened"] == 1
    assert stack.message("welcome").status == "opened"


async def test_a_delivery_webhook_that_beats_the_sends_timeout_is_not_overwritten(
    world: World, emulator: ProviderEmulator
) -> None:
    emulator.hold("email")
    try:
        async with running_stack(world, settled=False, provider_timeout_seconds=5) as running:
            await _until(lambda: len(emulator.messages("email")) == 1)
            [taken] = emulator.messages("email")
            assert running.message("welcome").status == "sending", "the send is still waiting for SendGrid"
            delivered = {"event": "delivered", "sg_event_id": "sg-early", "timestamp": int(time.time())}
            answer = await running.sendgrid([{**delivered, **taken.custom_args}])
            # The send gives up waiting (5 s after its request): outcome unknown, were it not
            # for the webhook.
            await asyncio.sleep(7)

            assert answer.status_code == 204
            assert running.message("welcome").status == "delivered"
    finally:
        emulator.release()
