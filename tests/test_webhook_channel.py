"""The webhook channel: a signed JSON POST to the shop, under the rules of the other providers
but not the customer's (consent, quiet hours, cap). Real workflow, activity, database and HTTP."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from activities.provider_errors import ProviderAmbiguous, ProviderRejected, ProviderRetryable
from activities.webhook import post_webhook
from settings import Settings
from simulation.runner import simulate
from storage.database import session_for
from storage.models import Message
from tests.conftest import make_scenario, messages
from tests.webhook_receiver import Answer, Receiver

SECRET = "webhook-secret-for-tests-0123456789"
JOURNEY = """\
journey: shop_sync
name: Shop sync
entry:
  - {on: signed_up, to: new}
stages:
  new:
    flow:
      - send: {channel: webhook, template: new_customer, url: "URL"}
      - send: {channel: webhook, template: new_customer, url: "URL?again=1"}
"""
BODY = '{"event": "new_customer", "name": {{ customer.first_name | tojson }}, "code": {{ discount_code | tojson }}}\n'


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("CYKLO_WEBHOOK_SECRET", SECRET)
    with Receiver(SECRET).running() as running:
        yield running


def _journeys(tmp_path: Path, receiver: Receiver) -> Path:
    folder = tmp_path / "journeys"
    for locale in ("pl", "en"):
        (folder / "templates" / locale / "webhook").mkdir(parents=True)
        (folder / "templates" / locale / "webhook" / "new_customer.json").write_text(BODY)
    (folder / "shop_sync.yaml").write_text(JOURNEY.replace("URL", receiver.url))
    return folder


async def test_webhook_is_signed_carries_the_ledger_key_and_ignores_consent_and_quiet_hours(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="activities.send")
    database = f"sqlite:///{tmp_path}/cyklo.db"
    # 22:30 in Warsaw, no consent at all: an email would wait and then be suppressed.
    scenario = make_scenario(
        {"at": "0s", "type": "signed_up"},
        start="2026-03-02T22:30:00+01:00",
        until="1h",
        consents={"email": False, "sms": False},
    )

    result = await simulate([_journeys(tmp_path, receiver)], scenario, database_url=database)

    outcome = [(entry.at.strftime("%H:%M"), entry.channel, entry.status) for entry in messages(result)]
    assert outcome == [("22:30", "webhook", "sent"), ("22:30", "webhook", "sent")]
    assert [request.signed for request in receiver.received] == [True, True]
    first = receiver.received[0]
    assert first.json() == {"event": "new_customer", "name": "Ala", "code": first.json()["code"]}
    with session_for(database) as session:
        rows = session.exec(select(Message).order_by(Message.id)).all()  # type: ignore[arg-type]
    assert [row.status for row in rows] == ["sent", "sent"]
    assert [request.headers["X-Cyklo-Idempotency-Key"] for request in receiver.received] == [
        row.idempotency_key for row in rows
    ]
    assert first.headers["X-Cyklo-Message-Id"] == str(rows[0].id)
    assert first.json()["code"] == rows[0].discount_code
    sends = [record.getMessage() for record in caplog.records if record.name == "activities.send"]
    assert sends == [f"send webhook message {row.id} shop_sync/new_customer attempt 1: sent" for row in rows]


async def test_webhook_503_is_retried_after_retry_after_and_a_400_is_recorded_and_the_journey_goes_on(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.answer_next(Answer(503, {"Retry-After": "1"}), Answer(204), Answer(400))

    result = await simulate(
        [_journeys(tmp_path, receiver)], make_scenario({"at": "0s", "type": "signed_up"}, until="1h")
    )

    sent, failed = messages(result)
    assert (sent.status, failed.status) == ("sent", "failed")
    assert (failed.detail or "").startswith("400: webhook refused")
    first, retried, refused = receiver.received
    assert (first.answered, retried.answered, refused.answered) == (503, 204, 400)
    assert first.headers["X-Cyklo-Idempotency-Key"] == retried.headers["X-Cyklo-Idempotency-Key"]
    assert first.body == retried.body


def _settings(secret: str = SECRET) -> Settings:
    return Settings(webhook_secret=secret, provider_timeout_seconds=0.5)


def test_an_answer_that_never_comes_is_outcome_unknown(receiver: Receiver) -> None:
    receiver.answer_next(Answer(204, delay=2))

    with pytest.raises(ProviderAmbiguous):
        post_webhook(receiver.url, b"{}", "key-1", 1, _settings())

    assert len(receiver.received) == 1  # it went out: resending could deliver it twice


def test_a_refused_connection_is_retryable_and_a_missing_secret_sends_nothing(receiver: Receiver) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/hooks"
    with pytest.raises(ProviderRetryable):
        post_webhook(closed, b"{}", "key-1", 1, _settings())
    with pytest.raises(ProviderRejected, match="CYKLO_WEBHOOK_SECRET") as refused:
        post_webhook(receiver.url, b"{}", "key-1", 1, _settings(secret=""))

    assert refused.value.code == "configuration"
    assert receiver.received == []
