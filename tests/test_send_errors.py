"""Errors at the right depth: the database failing during a send is retried by the activity's
retry policy and never recorded as a lost message or a template error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from activities.send import MessageSender
from bench.faults.gate import DatabaseGate
from definition.channels import Channel
from definition.metrics import Metrics
from emulator.server import ProviderEmulator
from publishing import publish_journeys
from simulation.runner import simulate
from storage import customers
from storage.database import session_for
from storage.models import Message
from tests.conftest import JOURNEYS, emulator_settings, make_scenario, messages
from workflows.interface import SendRequest

SEND_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class RefusingGate(DatabaseGate):
    """The fault suite's gate, able to refuse one connection: the open ones are reset, so the
    next database call must connect, and that connection is refused."""

    refusals = 0

    def refuse_once(self) -> None:
        self.refusals = 1
        self._call(self._reset())

    async def _reset(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusals:
            self.refusals -= 1
            writer.transport.abort()
            return
        await super()._serve(reader, writer)


@pytest.fixture
def gated_url(postgres_url: str) -> Iterator[tuple[RefusingGate, str]]:
    gate = RefusingGate("127.0.0.1", 5432)
    with gate:
        yield gate, postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{gate.port}")


def _request() -> SendRequest:
    return SendRequest(
        idempotency_key="journey:lifecycle:c-1/x/1/prospect/0",
        customer_id="c-1",
        journey_id="lifecycle",
        journey_version=1,
        stage="prospect",
        step="prospect/0",
        channel=Channel.EMAIL,
        template="welcome",
        transactional=False,
        send_at=SEND_AT,
        metrics=Metrics().view(SEND_AT),
        event={"type": "signed_up", "properties": {}},
    )


def test_database_refusing_a_connection_before_the_provider_call_is_retried_not_recorded(
    gated_url: tuple[RefusingGate, str], emulator: ProviderEmulator
) -> None:
    gate, url = gated_url
    settings = emulator_settings(emulator, database_url=url)
    publish_journeys(settings, [JOURNEYS])
    with session_for(url) as session:
        customers.upsert(session, make_scenario(id="c-1").customer)
    sender = MessageSender(settings)

    gate.refuse_once()
    with pytest.raises(OperationalError):
        ActivityEnvironment().run(sender.send_message, _request())
    with session_for(url) as session:
        assert session.exec(select(Message)).all() == []
    assert emulator.attempts("email") == 0

    outcome = ActivityEnvironment().run(sender.send_message, _request())

    assert outcome.status == "sent"
    assert len(emulator.messages("email")) == 1


async def test_database_refusing_a_connection_while_the_send_is_recorded_sends_once_later(
    gated_url: tuple[RefusingGate, str], emulator: ProviderEmulator
) -> None:
    gate, url = gated_url
    emulator.hold("email")  # the welcome email's provider call stays open
    running = asyncio.ensure_future(
        simulate(
            [JOURNEYS],
            make_scenario({"at": "0s", "type": "signed_up"}, until="1d"),
            emulator=emulator,
            database_url=url,
        )
    )
    while not emulator.messages("email"):
        assert not running.done(), running.exception() if running.done() else None
        await asyncio.sleep(0.05)
    gate.refuse_once()  # recording `sent` must connect again, and is refused
    emulator.release()

    result = await running

    (welcome,) = [entry for entry in messages(result) if entry.template == "welcome"]
    assert welcome.status == "sent"
    (email,) = emulator.messages("email")
    with session_for(url) as session:
        (row,) = session.exec(select(Message).where(Message.template == "welcome")).all()
    assert (row.status, row.provider_message_id, row.reason) == ("sent", email.provider_id, None)
    assert gate.refusals == 0, "the refusal reached the send"
