"""`cyklo reconcile`: messages the ledger records `failed (outcome unknown)` are settled from the
providers' own records — SMS from Twilio's message list (the real client against the
emulator), email by webhooks only — without ever sending anything again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlmodel import select

from activities.sms import send_sms, twilio_client
from api.app import create_app
from definition.schedule import daytime_zone
from definition.statuses import MessageStatus
from emulator.server import ProviderEmulator
from emulator.signing import sign_twilio
from publishing import publish_journeys
from reconciliation import CLOCK_SKEW, TWILIO_QUEUE_LIMIT, Listed, ReconcileError, match, reconcile
from routing.events import IncomingEvent
from settings import Settings, as_environment
from storage import customers, ledger
from storage.database import migrate, session_for
from storage.models import Message
from tests.conftest import JOURNEYS, REPO, World, emulator_settings, make_scenario
from tests.test_emulator_contracts import MESSAGES_PATH, TWILIO_FILE, contract, problems, resolve
from worker import build_worker

PUBLIC_URL = "https://cyklo.example.com"
PHONE = "+48601234567"
PURCHASE = {"order_id": "o-1", "amount": 120.0, "category": "shoes"}


@dataclass
class Ledger:
    settings: Settings
    customer_id: str

    def rows(self) -> dict[tuple[str, str], Message]:
        with session_for(self.settings.database_url) as session:
            found = session.exec(select(Message).where(Message.customer_id == self.customer_id)).all()
        return {(message.channel, message.template): message for message in found}

    def get(self, channel: str, template: str) -> Message:
        return self.rows()[(channel, template)]


async def _until(condition: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def _answers_lost(world: World, emulator: ProviderEmulator, *channels: Any) -> Ledger:
    """Ala signs up and buys; the provider takes every message of `channels` but its answer
    never comes, so the send records those `failed (outcome unknown)`."""
    settings = world.settings.model_copy(
        update={"journeys_dir": JOURNEYS, "provider_timeout_seconds": 1, "public_url": PUBLIC_URL}
    )
    publish_journeys(settings, [JOURNEYS])
    scenario = make_scenario(timezone=daytime_zone(datetime.now(UTC)), phone=PHONE)
    world.add_customers(scenario)
    ledger = Ledger(settings, scenario.customer.id)
    router = world.router(settings)
    for channel in channels:
        emulator.hold(channel)
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            async with build_worker(world.env.client, settings, executor):
                await router.route(
                    IncomingEvent(event_id="e-1", customer_id=ledger.customer_id, type="signed_up")
                )
                await _until(lambda: ("email", "welcome") in ledger.rows())
                await router.route(
                    IncomingEvent(
                        event_id="e-2", customer_id=ledger.customer_id, type="purchase", properties=PURCHASE
                    )
                )
                await _until(
                    lambda: (
                        all(
                            message.status not in ("pending", "sending", "retrying")
                            for message in ledger.rows().values()
                        )
                        and ("sms", "thank_you") in ledger.rows()
                    )
                )
    finally:
        emulator.release()
    return ledger


def _cli(settings: Settings, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "reconcile", "--since", "2d"],
        cwd=REPO,
        env={**os.environ, **as_environment(settings), **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_reconcile_settles_a_delivered_sms_from_twilios_list_and_leaves_email_to_webhooks(
    world: World, emulator: ProviderEmulator
) -> None:
    ledger = await _answers_lost(world, emulator, "sms", "email")
    unknown = {key: message for key, message in ledger.rows().items() if message.status == "failed"}
    assert set(unknown) == {("email", "welcome"), ("email", "thank_you"), ("sms", "thank_you")}
    assert all(
        message.reason and message.reason.startswith("outcome unknown") for message in unknown.values()
    )
    [taken] = emulator.messages("sms")

    without_credentials = await asyncio.to_thread(
        _cli, ledger.settings, TWILIO_ACCOUNT_SID="", TWILIO_AUTH_TOKEN=""
    )
    assert without_credentials.returncode == 2
    assert "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in without_credentials.stderr
    assert "Traceback" not in without_credentials.stderr
    assert ledger.get("sms", "thank_you").status == "failed", "nothing changed without credentials"

    answer = await asyncio.to_thread(_cli, ledger.settings)
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.splitlines()
    [sms_line] = [line for line in lines if " sms " in line]
    assert f"settled: delivered (Twilio delivered, {taken.provider_id})" in sms_line
    email_lines = [line for line in lines if " email " in line]
    assert len(email_lines) == 2 and all("still unknown: webhooks only" in line for line in email_lines)
    assert lines[-1] == "3 messages failed (outcome unknown) in the last 2d: 1 settled, 2 still unknown"
    assert PHONE not in answer.stdout and "ala@example.com" not in answer.stdout

    sms = ledger.get("sms", "thank_you")
    assert (sms.status, sms.provider_message_id) == ("delivered", taken.provider_id)
    assert (
        sms.reason
        == f"repaired by reconcile: twilio delivered ({taken.provider_id}) (outcome unknown before)"
    )
    assert len(emulator.messages("sms")) == 1, "reconciling sends nothing"

    again = await asyncio.to_thread(_cli, ledger.settings)
    assert again.returncode == 0 and "2 messages" in again.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("twilio_says", "error_code", "ledger_says"),
    [("sent", None, "sent"), ("undelivered", 30007, "failed"), ("queued", None, "sent")],
)
async def test_reconcile_records_what_twilio_lists_and_later_callbacks_find_the_message(
    world: World, emulator: ProviderEmulator, twilio_says: str, error_code: int | None, ledger_says: str
) -> None:
    ledger = await _answers_lost(world, emulator, "sms")
    [taken] = emulator.messages("sms")
    emulator.deliver_as(taken.provider_id, twilio_says, error_code)

    [settled] = [result for result in await asyncio.to_thread(reconcile, ledger.settings, timedelta(days=2))]

    assert (settled.settled, settled.status) == (True, ledger_says)
    sms = ledger.get("sms", "thank_you")
    assert (sms.status, sms.provider_message_id) == (ledger_says, taken.provider_id)
    assert sms.reason is not None and sms.reason.startswith(f"repaired by reconcile: twilio {twilio_says}")
    if error_code:
        assert f"twilio {error_code}" in sms.reason

    # With the sid recorded, Twilio's status callbacks now find the message and move it on.
    delivered = await _twilio_callback(
        world, ledger.settings, {"MessageSid": taken.provider_id, "MessageStatus": "delivered"}
    )
    assert delivered.status_code == 204
    assert ledger.get("sms", "thank_you").status == ("failed" if ledger_says == "failed" else "delivered")


async def test_a_twilio_callback_cannot_match_an_sms_whose_sid_was_never_recorded(
    world: World, emulator: ProviderEmulator
) -> None:
    ledger = await _answers_lost(world, emulator, "sms")
    [taken] = emulator.messages("sms")

    answer = await _twilio_callback(
        world, ledger.settings, {"MessageSid": taken.provider_id, "MessageStatus": "delivered"}
    )

    assert answer.status_code == 204
    assert ledger.get("sms", "thank_you").status == "failed", "that is what `cyklo reconcile` is for"


async def _twilio_callback(world: World, settings: Settings, params: dict[str, str]) -> httpx.Response:
    app = create_app(settings, client=world.env.client)
    path = "/webhooks/twilio/status"
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as client:
            signature = sign_twilio(settings.twilio_auth_token, PUBLIC_URL + path, params)
            return await client.post(path, data=params, headers={"X-Twilio-Signature": signature})


# --- matching a ledger row to Twilio's list: pure logic --------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _row(
    sent_minutes_ago: float,
    segments: int | None = 1,
    took: float = 0.2,
    now: datetime = NOW,
    id: int | None = 1,
) -> Message:
    started = now - timedelta(minutes=sent_minutes_ago)
    return Message(
        id=id,
        idempotency_key="k",
        customer_id="c-1",
        journey_id="lifecycle",
        journey_version=1,
        stage="new",
        step="0",
        channel="sms",
        template="thank_you",
        status="failed",
        reason="outcome unknown: Twilio did not answer",
        sms_segments=segments,
        scheduled_at=started,
        created_at=started,
        updated_at=started + timedelta(minutes=took),
    )


def _listed(sid: str, minutes_ago: float, segments: int | None = 1) -> Listed:
    return Listed(sid, "delivered", NOW - timedelta(minutes=minutes_ago), segments, None)


def test_the_one_listed_message_received_while_the_send_waited_is_the_rows() -> None:
    row = _row(sent_minutes_ago=300)
    ours = _listed("SMours", 299.9)
    earlier, later = _listed("SMearlier", 320), _listed("SMlater", 280)

    assert match(row, [earlier, ours, later], NOW) is ours


def test_clock_skew_between_twilio_and_us_is_tolerated() -> None:
    row = _row(sent_minutes_ago=300)
    skewed = _listed("SMskewed", 300 + CLOCK_SKEW.total_seconds() / 60 - 0.5)

    assert match(row, [skewed], NOW) is skewed


def test_two_messages_that_both_fit_leave_the_row_unknown_but_segments_can_tell_them_apart() -> None:
    row = _row(sent_minutes_ago=300, segments=2)
    one, two = _listed("SMone", 299.9, segments=2), _listed("SMtwo", 299.95, segments=2)
    short = _listed("SMshort", 299.95, segments=1)

    decision = match(row, [one, two], NOW)
    assert isinstance(decision, str) and decision.startswith("2 messages to this number fit")
    assert match(row, [one, short], NOW) is one


def test_no_listed_message_is_never_sent_only_once_twilios_queue_limit_has_passed() -> None:
    recent = _row(sent_minutes_ago=30)
    old = _row(sent_minutes_ago=TWILIO_QUEUE_LIMIT.total_seconds() / 60 + 5)

    waiting = match(recent, [], NOW)
    assert isinstance(waiting, str) and "run again after" in waiting
    assert match(old, [], NOW) is None


# --- the emulator's message list, as the real client reads it --------------------------------


def test_emulators_message_list_filters_pages_and_matches_twilios_list_schema(
    emulator: ProviderEmulator,
) -> None:
    settings = emulator_settings(emulator)
    for to in ("+48601234567", "+48601234568", "+48601234567"):
        send_sms(to, f"Hej {to}", settings)
    first, other, last = emulator.messages("sms")
    client = twilio_client(settings)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)

    listed = client.messages.list(
        to="+48601234567", from_=settings.sms_from, date_sent_after=hour_ago, page_size=1
    )
    future = client.messages.list(date_sent_after=datetime.now(UTC) + timedelta(hours=1))
    by_day = client.messages.list(date_sent=datetime.now(UTC).strftime("%Y-%m-%d"))

    assert [item.sid for item in listed] == [last.provider_id, first.provider_id], "newest first, every page"
    assert (future, len(by_day)) == ([], 3)
    assert listed[0].status == "delivered" and listed[0].date_sent is not None
    assert listed[0].num_segments == "1" and listed[0].direction == "outbound-api"

    document = contract(TWILIO_FILE)
    operation = resolve(document, document["paths"][MESSAGES_PATH]["get"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    page = httpx.get(
        emulator.url + MESSAGES_PATH.format(AccountSid=settings.twilio_account_sid),
        params={"To": "+48601234567", "PageSize": 1},
        auth=(settings.twilio_account_sid, settings.twilio_auth_token),
    ).json()
    assert problems(schema, page, jsonschema.Draft7Validator) == []
    assert page["next_page_uri"] and page["previous_page_uri"] is None and len(page["messages"]) == 1


def test_emulators_message_list_refuses_a_bad_date_and_a_stranger(emulator: ProviderEmulator) -> None:
    settings = emulator_settings(emulator)
    stranger = emulator_settings(emulator, twilio_account_sid="AC" + "1" * 32)
    url = emulator.url + MESSAGES_PATH.format(AccountSid=settings.twilio_account_sid)

    bad_date = httpx.get(url, params={"DateSent>": "yesterday"}, auth=(settings.twilio_account_sid, "t"))
    not_ours = httpx.get(url, auth=(stranger.twilio_account_sid, "t"))

    assert (bad_date.status_code, bad_date.json()["code"]) == (400, 20001)
    assert (not_ours.status_code, not_ours.json()["code"]) == (401, 20003)


def test_a_refused_message_list_is_one_clear_line(emulator: ProviderEmulator, tmp_path: Path) -> None:
    settings = emulator_settings(emulator, database_url=f"sqlite:///{tmp_path}/cyklo.db")
    publish_journeys(settings, [JOURNEYS])
    with session_for(settings.database_url) as session:
        customers.upsert(session, make_scenario(id="c-1", phone=PHONE).customer)
        session.add(_row(sent_minutes_ago=10, now=datetime.now(UTC), id=None))
        session.commit()
    emulator.fail_next("sms", 401)

    with pytest.raises(ReconcileError) as refused:
        reconcile(settings, timedelta(days=1))

    assert str(refused.value) == "Twilio refused the message list: HTTP 401, code 20003: Authenticate"


async def test_reconcile_without_twilio_answering_says_so_clearly(
    world: World, emulator: ProviderEmulator
) -> None:
    ledger = await _answers_lost(world, emulator, "sms")
    emulator.stop()

    answer = await asyncio.to_thread(_cli, ledger.settings)

    assert answer.returncode == 2
    assert (
        answer.stderr.startswith("cyklo reconcile: Twilio unreachable") and "Traceback" not in answer.stderr
    )


# --- the ledger's rule, on SQLite and PostgreSQL ----------------------------------------------


def test_evidence_repairs_only_an_unknown_outcome_and_never_loses_an_early_webhook(database_url: str) -> None:
    migrate(database_url)
    now = datetime.now(UTC)
    with session_for(database_url) as session:
        rows = {
            "unknown": _row(10, now=now, id=None),
            "old unknown": _row(3 * 24 * 60, now=now, id=None),
            "rejected": _row(10, now=now, id=None),
            "in flight": _row(1, now=now, id=None),
        }
        rows["rejected"].reason = "21211: invalid number"
        rows["in flight"].status = "sending"
        for name, row in rows.items():
            row.idempotency_key = name
            session.add(row)
        session.commit()

        found = ledger.outcome_unknown_since(session, now - timedelta(days=2))
        assert [row.idempotency_key for row in found] == ["unknown"]

        unknown, rejected = rows["unknown"], rows["rejected"]
        assert ledger.apply_evidence(session, unknown, MessageStatus.DELIVERED, "webhook: sendgrid delivered", "250 OK")
        assert not ledger.apply_evidence(session, rejected, MessageStatus.DELIVERED, "webhook: sendgrid delivered")
        session.commit()
        assert (unknown.status, rejected.status) == ("delivered", "failed")
        assert unknown.reason == "repaired by webhook: sendgrid delivered: 250 OK (outcome unknown before)"
        assert ledger.outcome_unknown_since(session, now - timedelta(days=2)) == []

        # A delivery webhook reached the row while the provider call was still waiting.
        in_flight = rows["in flight"]
        assert ledger.advance_status(session, in_flight, MessageStatus.DELIVERED)
        session.commit()
        assert in_flight.id is not None
        kept = ledger.record_outcome_unknown(session, in_flight.id, "outcome unknown: read timeout")
        assert kept.status == "delivered"

        for junk in ("9" * 30, -1, 0, "abc", None, "1e3"):
            assert ledger.message_by_id(session, junk) is None
