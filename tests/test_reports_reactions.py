"""The journey funnel from real sends and real reactions: four customers run a journey on the
time-skipping server with the real worker; the real SendGrid and Twilio clients send to the
emulator, which fails or holds what the test tells it to; deliveries, opens, clicks, a bounce
and an SMS STOP come back through cyklo's own signed webhooks; the funnel counts each exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select

from api.app import create_app
from definition.statuses import MessageStatus
from emulator.server import ProviderEmulator, RecordedMessage
from emulator.signing import new_sendgrid_key, sendgrid_public_key
from reports.funnel import Period, journey_funnel
from storage.database import session_for
from storage.models import Message
from tests.conftest import World
from tests.test_webhooks import KEY, PUBLIC_URL, Stack
from worker import build_worker

RESULTS = """\
journey: results
name: Results
locales: [pl]
quiet_hours: null
conversion_window: 7d
entry:
  - {on: signed_up, to: welcome}
stages:
  welcome:
    flow:
      - send: {channel: sms, template: hello_sms}
      - wait: 1h
      - send: {channel: email, template: hello}
      - wait: 1h
      - send: {channel: email, template: tips}
      - wait: 1h
      - send: {channel: email, template: extra}
"""
"""Four marketing messages an hour apart: the fourth is over the cap (3 in 7 days) for a
customer whose first three all went out."""

STEPS = ("hello_sms", "hello", "tips", "extra")
AS_SHOP = {"Authorization": f"Bearer {KEY}"}


def journeys_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "journeys"
    email, sms = folder / "templates" / "pl" / "email", folder / "templates" / "pl" / "sms"
    email.mkdir(parents=True)
    sms.mkdir(parents=True)
    for template in ("hello", "tips", "extra"):
        (email / f"{template}.subject.txt").write_text(f"{template}\n")
        (email / f"{template}.txt").write_text(f"{template} for {{{{ customer.first_name }}}}\n")
        (email / f"{template}.html").write_text(f"<p>{template}</p>\n")
    (sms / "hello_sms.txt").write_text("Hej {{ customer.first_name }}! Odp. STOP, aby zrezygnowac\n")
    (folder / "results.yaml").write_text(RESULTS)
    return folder


class Shop(Stack):
    """The running worker and API, and what the test does through them, one customer at a time."""

    def __init__(self, stack: Stack, emulator: ProviderEmulator) -> None:
        super().__init__(stack.client, stack.world, stack.signing_key)
        self.emulator = emulator

    async def sign_up(self, customer: str, phone: str) -> None:
        profile = {
            "email": f"{customer}@example.com",
            "phone": phone,
            "first_name": customer,
            "timezone": "Europe/Warsaw",
            "consents": {"email": True, "sms": True},
        }
        assert (
            await self.client.put(f"/v1/customers/{customer}", json=profile, headers=AS_SHOP)
        ).status_code == 200
        event = {"event_id": f"{customer}-signed-up", "customer_id": customer, "type": "signed_up"}
        assert (await self.client.post("/v1/events", json=event, headers=AS_SHOP)).status_code == 202

    async def next_step(self) -> None:
        """An hour of journey time: the wait before the next send ends."""
        await self.world.env.sleep(timedelta(hours=1))

    def ledger(self, customer: str) -> dict[str, Message]:
        with session_for(self.world.settings.database_url) as session:
            rows = session.exec(select(Message).where(Message.customer_id == customer)).all()
        return {row.template: row for row in rows}

    async def settled(self, customer: str, template: str) -> Message:
        """The customer's message once its send has finished, whatever became of it."""
        await until(
            lambda: (
                template in self.ledger(customer)
                and MessageStatus(self.ledger(customer)[template].status).final
            )
        )
        return self.ledger(customer)[template]

    def taken(self, message: Message) -> RecordedMessage:
        """What the provider took for this ledger row (the custom args the send attached)."""
        [found] = [
            taken
            for taken in self.emulator.messages(message.channel)
            if taken.custom_args.get("cyklo_message_id") == str(message.id)
            or taken.provider_id == message.provider_message_id
        ]
        return found

    async def email_news(self, message: Message, *events: tuple[str, dict[str, Any]]) -> None:
        """SendGrid's event webhook about the email, one signed post per event."""
        taken = self.taken(message)
        for number, (event, fields) in enumerate(events):
            item = {
                "event": event,
                "sg_event_id": f"sg-{message.id}-{number}",
                "sg_message_id": f"{taken.provider_id}.filter0001.1.0",
                "timestamp": int(time.time()),
                "email": taken.to,
                **taken.custom_args,
                **fields,
            }
            assert (await self.sendgrid([item])).status_code in (200, 204), event

    async def sms_delivered(self, message: Message) -> None:
        """Twilio's status callback about the SMS."""
        params = {"MessageSid": self.taken(message).provider_id, "MessageStatus": "delivered"}
        assert (await self.twilio("/webhooks/twilio/status", params)).status_code in (200, 204)

    async def sms_reply(self, phone: str, word: str) -> None:
        assert (
            await self.twilio("/webhooks/twilio/inbound", {"From": phone, "Body": word})
        ).status_code == 200


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running_shop(world: World, emulator: ProviderEmulator, journeys: Path) -> AsyncIterator[Shop]:
    signing_key = new_sendgrid_key()
    settings = world.settings.model_copy(
        update={
            "journeys_dir": journeys,
            "api_keys": f"{KEY}=events",
            "sendgrid_webhook_public_key": sendgrid_public_key(signing_key),
            "public_url": PUBLIC_URL,
            # A held answer becomes "outcome unknown" after 2 s; the emulator answers the rest at once.
            "provider_timeout_seconds": 2,
        }
    )
    app = create_app(settings, client=world.env.client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor), app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
                yield Shop(Stack(client, world, signing_key), emulator)


async def test_the_funnel_counts_what_real_sends_and_signed_reactions_made_of_each_step(
    world: World, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    async with running_shop(world, emulator, journeys_folder(tmp_path)) as shop:
        # Ala gets everything: her SMS is delivered and she answers STOP (within its 7-day
        # window: before any journey time has passed); her hello is delivered, opened and
        # clicked, her tips delivered; extra is her fourth marketing message in 3 hours: capped.
        await shop.sign_up("ala", "+48601000001")
        await shop.sms_delivered(await shop.settled("ala", "hello_sms"))
        await shop.sms_reply("+48601000001", "STOP")
        await shop.next_step()
        hello = await shop.settled("ala", "hello")
        await shop.email_news(
            hello, ("delivered", {}), ("open", {}), ("click", {"url": "https://shop.example.com"})
        )
        await shop.next_step()
        await shop.email_news(await shop.settled("ala", "tips"), ("delivered", {}))
        await shop.next_step()
        await shop.settled("ala", "extra")

        # Bob's hello bounces: his later emails are suppressed.
        await shop.sign_up("bob", "+48601000002")
        await shop.settled("bob", "hello_sms")
        await shop.next_step()
        bounce = {"type": "bounce", "reason": "550 5.1.1 no such user"}
        await shop.email_news(await shop.settled("bob", "hello"), ("bounce", bounce))
        for template in ("tips", "extra"):
            await shop.next_step()
            await shop.settled("bob", template)

        # Twilio refuses Cem's number (21211), SendGrid his hello (400); the rest goes out.
        shop.emulator.fail_next("sms", 400, code=21211)
        await shop.sign_up("cem", "+48601000003")
        await shop.settled("cem", "hello_sms")
        shop.emulator.fail_next("email", 400)
        for template in ("hello", "tips", "extra"):
            await shop.next_step()
            await shop.settled("cem", template)

        # SendGrid takes Dan's hello and never answers: outcome unknown, not resent.
        await shop.sign_up("dan", "+48601000004")
        await shop.settled("dan", "hello_sms")
        shop.emulator.hold("email")
        try:
            await shop.next_step()
            await shop.settled("dan", "hello")
        finally:
            shop.emulator.release()
        for template in ("tips", "extra"):
            await shop.next_step()
            await shop.settled("dan", template)

        outcomes = {
            (customer, template): shop.ledger(customer)[template].status
            for customer in ("ala", "bob", "cem", "dan")
            for template in STEPS
        }
        with session_for(world.settings.database_url) as session:
            funnel = journey_funnel(session, "results", Period(), "PLN")

    assert outcomes == {
        ("ala", "hello_sms"): "delivered",
        ("ala", "hello"): "clicked",
        ("ala", "tips"): "delivered",
        ("ala", "extra"): "capped",
        ("bob", "hello_sms"): "sent",
        ("bob", "hello"): "bounced",
        ("bob", "tips"): "suppressed",
        ("bob", "extra"): "suppressed",
        ("cem", "hello_sms"): "failed",
        ("cem", "hello"): "failed",
        ("cem", "tips"): "sent",
        ("cem", "extra"): "sent",
        ("dan", "hello_sms"): "sent",
        ("dan", "hello"): "failed",
        ("dan", "tips"): "sent",
        ("dan", "extra"): "sent",
    }
    assert [step.template for step in funnel.steps] == list(STEPS)
    assert (funnel.entered, funnel.stage_entries, funnel.sent) == (4, {"welcome": 4}, 10)
    figures = {
        step.template: (
            step.messages,
            step.sent,
            step.delivered,
            step.opened,
            step.clicked,
            step.bounced,
            step.capped,
            step.suppressed,
            step.failed,
            step.outcome_unknown,
            step.unsubscribed,
        )
        for step in funnel.steps
    }
    #                 messages sent deliv open click bounce cap supp failed           unknown unsub
    assert figures == {
        "hello_sms": (4, 3, 1, 0, 0, 0, 0, 0, {"21211": 1}, 0, 1),
        "hello": (4, 2, 1, 1, 1, 1, 0, 0, {"400": 1}, 1, 0),
        "tips": (4, 3, 1, 0, 0, 0, 0, 1, {}, 0, 0),
        "extra": (4, 2, 0, 0, 0, 0, 1, 1, {}, 0, 0),
    }
    assert all(step.in_flight == 0 and step.no_consent == 0 for step in funnel.steps)
