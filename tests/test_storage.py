"""Storage on SQLite and on the local PostgreSQL: migrations, ledger, profiles, versions, the send rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from activities.send import MessageSender
from emulator.server import ProviderEmulator
from publishing import publish_journeys
from settings import Settings
from storage import customers, journey_versions, ledger
from storage.customers import CustomerProfile
from storage.database import migrate, session_for
from storage.models import Customer, Message
from tests.conftest import JOURNEYS, emulator_settings, make_scenario, run, sent, welcome_row
from workflows.interface import SendOutcome, SendRequest

SEND_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _request(
    key: str, send_at: datetime = SEND_AT, template: str = "welcome", **overrides: object
) -> SendRequest:
    fields: dict[str, object] = {
        "idempotency_key": key,
        "customer_id": "c-1",
        "journey_id": "lifecycle",
        "journey_version": 1,
        "stage": "prospect",
        "step": "prospect/0",
        "channel": "email",
        "template": template,
        "transactional": False,
        "send_at": send_at,
        "metrics": make_metrics(),
        "event": {"type": "signed_up", "properties": {}},
    }
    fields.update(overrides)
    return SendRequest.model_validate(fields)


def send(sender: MessageSender, request: SendRequest) -> SendOutcome:
    """The activity as a worker runs it: its first attempt, in an activity context."""
    return ActivityEnvironment().run(sender.send_message, request)


def make_metrics() -> dict[str, object]:
    from definition.metrics import Metrics

    return Metrics().view(SEND_AT)


@pytest.fixture
def published(database_url: str, emulator: ProviderEmulator) -> Settings:
    settings = emulator_settings(emulator, database_url=database_url)
    publish_journeys(settings, [JOURNEYS])
    with session_for(database_url) as session:
        customers.upsert(session, make_scenario(id="c-1").customer)
    return settings


def test_migrations_run_twice_without_harm(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)
    with session_for(database_url) as session:
        assert session.exec(select(Customer)).all() == []


def test_profile_round_trips_with_consent_time_in_utc(database_url: str) -> None:
    migrate(database_url)
    profile = CustomerProfile.model_validate(
        {
            "id": "c-9",
            "email": "ola@example.com",
            "phone": "601 234 567",
            "locale": "en",
            "timezone": "America/New_York",
            "consents": {"email": True, "sms": False, "source": "checkout"},
        }
    )
    with session_for(database_url) as session:
        customers.upsert(session, profile)
    with session_for(database_url) as session:
        stored = session.get(Customer, "c-9")
    assert stored is not None
    assert (stored.phone, stored.locale, stored.consent_email, stored.consent_sms) == (
        "+48601234567",
        "en",
        True,
        False,
    )
    assert stored.consent_updated_at is not None and stored.consent_updated_at.tzinfo is not None


def test_publishing_unchanged_journeys_keeps_their_version(published: Settings) -> None:
    again = publish_journeys(published, [JOURNEYS])

    assert again == {"abandoned_cart": 1, "lifecycle": 1}
    with session_for(published.database_url) as session:
        assert journey_versions.get(session, "lifecycle").version == 1


def _welcome_row(**fields: Any) -> Message:
    return welcome_row("c-1", SEND_AT, **fields)


def test_ledger_idempotency_key_is_unique(published: Settings) -> None:
    with session_for(published.database_url) as session:
        for _ in range(2):
            session.add(_welcome_row(idempotency_key="k", status="sent"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_the_same_step_occurrence_sends_once_however_often_the_activity_runs(
    published: Settings, emulator: ProviderEmulator
) -> None:
    sender = MessageSender(published)
    outcomes = [send(sender, _request("journey:lifecycle:c-1/x/1/prospect/0")) for _ in range(3)]

    assert {outcome.status for outcome in outcomes} == {"sent"}
    assert len({outcome.message_id for outcome in outcomes}) == 1
    assert len(emulator.messages("email")) == 1


def test_cap_counts_the_rolling_7_days_before_the_send_across_journeys(
    published: Settings, emulator: ProviderEmulator
) -> None:
    sender = MessageSender(published)
    for day in range(3):
        journey = "abandoned_cart" if day == 1 else "lifecycle"
        template = "cart_reminder" if day == 1 else "welcome"
        outcome = send(
            sender, _request(f"k-{day}", SEND_AT + timedelta(days=day), template=template, journey_id=journey)
        )
        assert outcome.status == "sent"

    fourth = send(sender, _request("k-3", SEND_AT + timedelta(days=6, hours=23)))
    eighth_day = send(sender, _request("k-4", SEND_AT + timedelta(days=7, minutes=1)))

    assert (fourth.status, eighth_day.status) == ("capped", "sent")
    with session_for(published.database_url) as session:
        statuses = [row.status for row in session.exec(select(Message).order_by(Message.id)).all()]  # type: ignore[arg-type]
    assert statuses == ["sent", "sent", "sent", "capped", "sent"]


def test_invalid_phone_is_recorded_failed_not_retried(
    published: Settings, emulator: ProviderEmulator
) -> None:
    with session_for(published.database_url) as session:
        customer = session.get(Customer, "c-1")
        assert customer is not None
        customer.phone = "+4860"
        session.add(customer)
        session.commit()

    outcome = send(
        MessageSender(published), _request("k-sms", channel="sms", template="first_order_last_call")
    )

    assert outcome.status == "failed" and "phone" in (outcome.reason or "")
    assert emulator.attempts("sms") == 0


async def test_a_journey_runs_on_postgresql_as_on_sqlite(postgres_url: str) -> None:
    scenario = make_scenario({"at": "0s", "type": "signed_up"}, until="4d")
    result = await run(scenario, database_url=postgres_url)

    assert sent(result) == [
        ("2026-03-02 10:00", "email", "welcome"),
        ("2026-03-05 10:00", "email", "first_order_nudge"),
    ]


def test_sms_encoding_and_segments_are_recorded_in_the_ledger(
    published: Settings, emulator: ProviderEmulator
) -> None:
    outcome = send(
        MessageSender(published), _request("k-sms-pl", channel="sms", template="first_order_last_call")
    )

    (sms,) = emulator.messages("sms")
    assert outcome.status == "sent" and sms.to == "+48601234567"
    assert "ć" in (sms.body or ""), "the Polish copy has Polish letters"
    with session_for(published.database_url) as session:
        row = session.exec(select(Message).where(Message.idempotency_key == "k-sms-pl")).one()
    assert row.sms_encoding == "UCS-2"
    assert row.sms_segments == -(-len(sms.body or "") // 67)
    assert row.provider_message_id == sms.provider_id


def test_two_journeys_sending_at_once_cannot_both_pass_the_cap(
    published: Settings, emulator: ProviderEmulator
) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    sender = MessageSender(published)
    for day in range(2):
        assert send(sender, _request(f"before-{day}", SEND_AT + timedelta(days=day))).status == "sent"
    emulator.hold("email")  # both sends stay in flight together

    with ThreadPoolExecutor(max_workers=2) as pool:
        racing = [
            pool.submit(
                send,
                sender,
                _request(f"race-{n}", SEND_AT + timedelta(days=3), journey_id=journey, template=template),
            )
            for n, (journey, template) in enumerate(
                [("lifecycle", "welcome"), ("abandoned_cart", "cart_reminder")]
            )
        ]
        while len(emulator.messages("email")) < 3 and not all(future.done() for future in racing):
            time.sleep(0.01)
        emulator.release()
        statuses = sorted(future.result().status for future in racing)

    assert statuses == ["capped", "sent"]
    assert len(emulator.messages("email")) == 3


def test_content_of_an_older_version_is_published_again_as_the_newest(database_url: str) -> None:
    """What `cyklo rollback` does; the migration lets a content hash repeat on both databases."""
    migrate(database_url)
    with session_for(database_url) as session:
        numbers = [
            journey_versions.publish(session, "promo", content, "{}", {}, git_commit="a" * 40)
            for content in ("old", "new", "new", "old")
        ]
        rows = journey_versions.history(session, "promo")

    assert numbers == [1, 2, 2, 3]
    assert [(row.version, row.content_hash, row.git_commit) for row in rows] == [
        (1, "old", "a" * 40),
        (2, "new", "a" * 40),
        (3, "old", "a" * 40),
    ]


def test_purchases_recorded_before_the_amount_column_get_their_amount(database_url: str) -> None:
    """0008 moves a purchase's amount out of its JSON into a column the reports sum in SQL:
    purchases already recorded are filled, other events and non-numeric amounts stay empty."""
    import json

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from storage.database import MIGRATIONS, engine_for, normalise_url
    from storage.models import Event

    url = normalise_url(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine_for(url)
    command.upgrade(config, "0007_experiments")
    rows = [
        ("p-1", "purchase", {"order_id": "o-1", "amount": 249.5}),
        ("p-2", "purchase", {"order_id": "o-2", "amount": 100}),
        ("p-3", "purchase", {"order_id": "o-3", "amount": "lots"}),
        ("s-1", "signed_up", {"amount": 5}),
    ]
    with engine_for(url).begin() as connection:
        for event_id, type_, properties in rows:
            connection.execute(
                text(
                    "INSERT INTO events (event_id, customer_id, type, occurred_at, received_at, properties) "
                    "VALUES (:id, 'c-1', :type, :at, :at, :properties)"
                ),
                {
                    "id": event_id,
                    "type": type_,
                    "at": datetime(2026, 1, 5, tzinfo=UTC),
                    "properties": json.dumps(properties),
                },
            )

    migrate(url)

    with session_for(url) as session:
        amounts = {event.event_id: event.amount for event in session.exec(select(Event)).all()}
        # And a purchase recorded now gets its amount on insert.
        session.add(
            Event(
                event_id="p-4",
                customer_id="c-1",
                type="purchase",
                occurred_at=datetime.now(UTC),
                properties={"amount": 12.0},
            )
        )
        session.commit()
        assert session.get(Event, "p-4").amount == 12.0  # type: ignore[union-attr]
    assert amounts == {"p-1": 249.5, "p-2": 100.0, "p-3": None, "s-1": None}


@pytest.mark.parametrize(
    ("found", "provider_id", "recorded"),
    [("sending", "sg-1", "sent"), ("retrying", "sg-1", "sent"), ("delivered", "sg-1", "delivered"), ("bounced", None, "bounced")],
)
def test_a_send_records_sent_in_one_statement_without_undoing_a_webhook_that_came_first(
    published: Settings, found: str, provider_id: str | None, recorded: str
) -> None:
    before = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with session_for(published.database_url) as session:
        row = _welcome_row(
            idempotency_key=f"k-{found}",
            status=found,
            reason="kept" if found == "bounced" else None,
            updated_at=before,
        )
        session.add(row)
        session.commit()
        message_id = row.id
        assert message_id is not None

    with session_for(published.database_url) as session:
        answer = ledger.record_sent(session, message_id, provider_id)

    with session_for(published.database_url) as session:
        stored = session.get(Message, message_id)
        assert stored is not None
        assert answer == (recorded, stored.reason, "c-1")
        assert stored.status == recorded
        assert stored.provider_message_id == provider_id
        assert (stored.updated_at > before) is (recorded != found)


async def test_a_local_send_the_provider_took_waits_for_the_database_and_records_it_sent(
    postgres_url: str, emulator: ProviderEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A local activity has no heartbeat to hand the provider's id to a retry, which would find
    the row `sending` and record the outcome unknown: so when the database goes away between the
    provider's answer and the record, the attempt itself waits for it (RECORD_SENT_PAUSES)."""
    import asyncio
    import dataclasses
    import time

    import psycopg

    from tests.conftest import POSTGRES_ADMIN_URL

    settings = emulator_settings(emulator, database_url=postgres_url)
    publish_journeys(settings, [JOURNEYS])
    with session_for(postgres_url) as session:
        customers.upsert(session, make_scenario(id="c-1").customer)
    database = postgres_url.rsplit("/", 1)[1]
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, is_local=True)
    emulator.hold("email")
    sending = asyncio.create_task(
        asyncio.to_thread(environment.run, MessageSender(settings).send_message, _request("k-local"))
    )
    while not emulator.messages("email"):  # the provider has it; its answer is held
        await asyncio.sleep(0.05)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        )
        emulator.release()
        refused_until = time.monotonic() + 2.0
        while time.monotonic() < refused_until and "again in" not in caplog.text:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a second try refused too
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    outcome = await sending

    assert "recording message" in caplog.text and "again in" in caplog.text
    assert outcome.status == "sent"
    with session_for(postgres_url) as session:
        row = session.exec(select(Message).where(Message.idempotency_key == "k-local")).one()
    assert (row.status, row.attempts) == ("sent", 1)
    assert row.provider_message_id == emulator.messages("email")[0].provider_id
    assert len(emulator.messages("email")) == 1, "sent once: the wait is for the record, not a resend"
