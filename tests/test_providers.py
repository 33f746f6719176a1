"""The real SendGrid and Twilio clients over HTTP to the emulator, and what their answers mean to cyklo."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any

import pytest
import requests

from activities.email import OutgoingEmail, send_email
from activities.provider_errors import ProviderAmbiguous, ProviderRejected, ProviderRetryable
from activities.sms import send_sms
from definition.phones import InvalidPhone, normalize_phone
from emulator.server import ProviderEmulator
from settings import Settings
from tests.conftest import REPO, emulator_settings

ACCOUNT_SID = "AC" + "0" * 32


@pytest.fixture
def settings(emulator: ProviderEmulator) -> Settings:
    return emulator_settings(emulator)


def an_email(**changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "to": "ala@example.com",
        "to_name": "Ala",
        "subject": "Witaj",
        "html": "<p>Cześć</p>",
        "text": "Cześć",
        "custom_args": {"cyklo_message_id": "7"},
        "categories": ["lifecycle", "welcome"],
        "unsubscribe_url": "https://shop.example.com/unsubscribe?m=7",
    }
    fields.update(changes)
    return OutgoingEmail(**fields)


def wait_until(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# --- sending ------------------------------------------------------------------------------


def test_email_reaches_sendgrid_with_content_correlation_ids_and_one_click_unsubscribe(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    provider_id = send_email(an_email(), settings)

    (message,) = emulator.messages("email")
    assert provider_id and message.provider_id == provider_id
    assert (message.to, message.sender) == ("ala@example.com", settings.email_from)
    assert (message.subject, message.html, message.text) == ("Witaj", "<p>Cześć</p>", "Cześć")
    assert message.custom_args == {"cyklo_message_id": "7"}
    assert sorted(message.categories) == ["lifecycle", "welcome"]  # a set to SendGrid
    assert message.raw["headers"] == {
        "List-Unsubscribe": "<https://shop.example.com/unsubscribe?m=7>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert message.received_at.tzinfo == UTC


def test_email_request_headers_are_recorded_without_the_api_key(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    send_email(an_email(), settings)

    (message,) = emulator.messages("email")
    assert message.headers["Authorization"] == "Bearer [redacted]"
    assert message.headers["Content-Type"] == "application/json"
    assert "SG.test" not in str(message.as_json())


def test_transactional_email_carries_no_unsubscribe_headers(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    send_email(an_email(unsubscribe_url=None, to_name=None), settings)

    (message,) = emulator.messages("email")
    assert "headers" not in message.raw
    assert message.raw["personalizations"][0]["to"] == [{"email": "ala@example.com"}]


def test_sms_reaches_twilio_from_the_configured_sender(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    sid = send_sms("+48601234567", "Dziękujemy!", settings)

    (message,) = emulator.messages("sms")
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid) and message.provider_id == sid
    assert (message.to, message.sender, message.body) == ("+48601234567", settings.sms_from, "Dziękujemy!")
    assert message.raw == {"To": "+48601234567", "From": settings.sms_from, "Body": "Dziękujemy!"}
    assert message.headers["Authorization"] == "Basic [redacted]"


# --- what the providers' answers mean -----------------------------------------------------


def test_sendgrid_429_is_retryable_after_its_retry_after(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    emulator.fail_next("email", 429, retry_after=7)

    with pytest.raises(ProviderRetryable) as error:
        send_email(an_email(), settings)

    assert error.value.retry_after == 7
    assert emulator.messages("email") == [] and emulator.attempts("email") == 1


def test_sendgrid_429_without_retry_after_waits_for_the_rate_limit_reset(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    emulator.fail_next("email", 429)

    with pytest.raises(ProviderRetryable) as error:
        send_email(an_email(), settings)

    assert error.value.retry_after is not None and 55 <= error.value.retry_after <= 61


@pytest.mark.parametrize("status", [500, 502, 503])
def test_sendgrid_5xx_is_retryable_and_the_next_send_goes_through(
    settings: Settings, emulator: ProviderEmulator, status: int
) -> None:
    emulator.fail_next("email", status)

    with pytest.raises(ProviderRetryable) as error:
        send_email(an_email(), settings)
    send_email(an_email(), settings)

    assert error.value.retry_after is None
    assert (emulator.attempts("email"), len(emulator.messages("email"))) == (2, 1)


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_sendgrid_4xx_is_a_permanent_rejection(
    settings: Settings, emulator: ProviderEmulator, status: int
) -> None:
    emulator.fail_next("email", status)

    with pytest.raises(ProviderRejected) as error:
        send_email(an_email(), settings)

    assert error.value.code == str(status)


def test_missing_credentials_are_refused_before_anything_is_sent(emulator: ProviderEmulator) -> None:
    with pytest.raises(ProviderRejected, match="SENDGRID_API_KEY") as email_error:
        send_email(an_email(), emulator_settings(emulator, sendgrid_api_key=""))
    with pytest.raises(ProviderRejected, match="TWILIO_AUTH_TOKEN") as sms_error:
        send_sms("+48601234567", "hej", emulator_settings(emulator, twilio_auth_token=""))

    assert email_error.value.code == sms_error.value.code == "configuration"
    assert emulator.attempts("email") == emulator.attempts("sms") == 0


def test_twilio_429_is_retryable_after_its_retry_after(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    emulator.fail_next("sms", 429, code=20429, retry_after=3)

    with pytest.raises(ProviderRetryable) as error:
        send_sms("+48601234567", "hej", settings)

    assert error.value.retry_after == 3
    assert emulator.messages("sms") == [] and emulator.attempts("sms") == 1


@pytest.mark.parametrize("status", [500, 503])
def test_twilio_5xx_is_retryable(settings: Settings, emulator: ProviderEmulator, status: int) -> None:
    emulator.fail_next("sms", status)

    with pytest.raises(ProviderRetryable) as error:
        send_sms("+48601234567", "hej", settings)

    assert error.value.retry_after is None


@pytest.mark.parametrize("code", [21211, 21408, 21610, 21612, 21614])
def test_twilio_permanent_codes_are_rejections_with_that_code(
    settings: Settings, emulator: ProviderEmulator, code: int
) -> None:
    emulator.fail_next("sms", 400, code=code)

    with pytest.raises(ProviderRejected) as error:
        send_sms("+48601234567", "hej", settings)

    assert error.value.code == str(code)


def test_twilio_refuses_an_invalid_number_with_21211(settings: Settings, emulator: ProviderEmulator) -> None:
    with pytest.raises(ProviderRejected) as error:
        send_sms("+4812", "hej", settings)

    assert error.value.code == "21211"
    assert emulator.messages("sms") == [] and emulator.attempts("sms") == 1


def test_provider_down_is_retryable(settings: Settings, emulator: ProviderEmulator) -> None:
    emulator.stop()

    with pytest.raises(ProviderRetryable):
        send_email(an_email(), settings)
    with pytest.raises(ProviderRetryable):
        send_sms("+48601234567", "hej", settings)


def test_a_stopped_emulator_is_down_for_pooled_connections_too(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    send_sms("+48601234567", "first", settings)  # leaves a keep-alive connection in the pool
    emulator.stop()

    with pytest.raises(ProviderRetryable):
        send_sms("+48601234567", "second", settings)
    assert len(emulator.messages("sms")) == 1


def test_no_answer_after_the_request_went_out_is_ambiguous_not_retryable(emulator: ProviderEmulator) -> None:
    settings = emulator_settings(emulator, provider_timeout_seconds=0.5)
    emulator.hold("email")
    emulator.hold("sms")
    try:
        with pytest.raises(ProviderAmbiguous):
            send_email(an_email(), settings)
        with pytest.raises(ProviderAmbiguous):
            send_sms("+48601234567", "hej", settings)
    finally:
        emulator.release()

    assert len(emulator.messages("email")) == 1 and len(emulator.messages("sms")) == 1, (
        "the provider did take them"
    )


# --- the emulator itself ------------------------------------------------------------------


def test_a_held_answer_comes_on_release_and_blocks_no_other_channel(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    emulator.hold("email")
    with ThreadPoolExecutor(max_workers=1) as pool:
        email = pool.submit(send_email, an_email(), settings)
        wait_until(lambda: len(emulator.messages("email")) == 1)

        started = time.monotonic()
        send_sms("+48601234567", "hej", settings)
        assert time.monotonic() - started < 1
        assert not email.done(), "accepted and recorded, but not answered yet"
        assert len(emulator.held_ages("email")) == 1 and emulator.held_ages("sms") == []

        emulator.release()
        assert email.result(timeout=5) == emulator.messages("email")[0].provider_id
        assert emulator.held_ages("email") == []


def test_stopping_while_holding_drops_the_answer(emulator: ProviderEmulator) -> None:
    settings = emulator_settings(emulator, provider_timeout_seconds=30)
    emulator.hold("sms")
    with ThreadPoolExecutor(max_workers=1) as pool:
        sms = pool.submit(send_sms, "+48601234567", "hej", settings)
        wait_until(lambda: len(emulator.messages("sms")) == 1)
        emulator.stop()

        with pytest.raises(ProviderAmbiguous):
            sms.result(timeout=5)


def test_faults_apply_to_the_next_requests_of_their_channel_only(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    emulator.fail_next("email", 503, count=2)

    send_sms("+48601234567", "hej", settings)
    for _ in range(2):
        with pytest.raises(ProviderRetryable):
            send_email(an_email(), settings)
    send_email(an_email(), settings)

    assert (emulator.attempts("email"), len(emulator.messages("email"))) == (3, 1)
    assert (emulator.attempts("sms"), len(emulator.messages("sms"))) == (1, 1)


def test_reset_forgets_messages_attempts_and_faults(settings: Settings, emulator: ProviderEmulator) -> None:
    send_email(an_email(), settings)
    emulator.fail_next("sms", 500)

    emulator.reset()

    send_sms("+48601234567", "hej", settings)
    assert emulator.messages("email") == [] and emulator.attempts("email") == 0
    assert len(emulator.messages("sms")) == 1


def test_sendgrid_needs_a_bearer_token(emulator: ProviderEmulator) -> None:
    url = f"{emulator.url}/v3/mail/send"
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        answer = requests.post(url, json={}, headers=headers, timeout=5)

        assert answer.status_code == 401
        assert answer.json()["errors"][0]["message"]


def test_twilio_basic_user_must_be_the_account_in_the_path(emulator: ProviderEmulator) -> None:
    answer = requests.post(
        f"{emulator.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data={"To": "+48601234567", "From": "+48500000000", "Body": "hej"},
        auth=("AC" + "1" * 32, "token"),
        timeout=5,
    )

    assert answer.status_code == 401
    assert answer.json()["code"] == 20003 and answer.json()["status"] == 401
    assert emulator.messages() == []


def test_other_processes_control_the_emulator_over_http(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    def post(path: str, order: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(f"{emulator.url}/_emulator/{path}", json=order, timeout=5)

    assert requests.get(f"{emulator.url}/health", timeout=5).json() == {"status": "ok"}
    assert post("faults", {"channel": "sms", "status": 400, "code": 21610}).status_code == 204
    with pytest.raises(ProviderRejected):
        send_sms("+48601234567", "hej", settings)
    send_sms("+48601234567", "hej", settings)
    send_email(an_email(), settings)

    listed = requests.get(f"{emulator.url}/_emulator/messages", params={"channel": "sms"}, timeout=5).json()
    assert [(message["channel"], message["to"], message["body"]) for message in listed] == [
        ("sms", "+48601234567", "hej")
    ]
    assert post("faults", {"channel": "fax", "status": 500}).status_code == 400
    assert post("faults", {"channel": "sms"}).status_code == 400
    assert post("reset").status_code == 204
    assert requests.get(f"{emulator.url}/_emulator/messages", timeout=5).json() == []


def test_hold_and_release_over_http(settings: Settings, emulator: ProviderEmulator) -> None:
    requests.post(f"{emulator.url}/_emulator/hold", json={"channel": "email"}, timeout=5).raise_for_status()
    with ThreadPoolExecutor(max_workers=1) as pool:
        email = pool.submit(send_email, an_email(), settings)
        wait_until(lambda: len(emulator.messages("email")) == 1)
        assert not email.done()

        requests.post(f"{emulator.url}/_emulator/release", timeout=5).raise_for_status()
        assert email.result(timeout=5)


def test_python_m_emulator_serves_until_ctrl_c_without_a_traceback() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_until(healthy, seconds=20)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"http://127.0.0.1:{port}" in stdout


# --- phone numbers ---------------------------------------------------------------------


def test_polish_numbers_are_normalised_to_e164() -> None:
    assert normalize_phone("601 234 567", "PL") == "+48601234567"
    assert normalize_phone("+48 601-234-567", "PL") == "+48601234567"
    assert normalize_phone("+1 650 253 0000", "PL") == "+16502530000"


def test_numbers_with_an_extension_are_refused() -> None:
    with pytest.raises(InvalidPhone, match="extension"):
        normalize_phone("+48 22 123 45 67 ext. 12", "PL")


@pytest.mark.parametrize("garbage", ["not a number", "12", "+48 000", ""])
def test_garbage_is_not_a_phone_number(garbage: str) -> None:
    with pytest.raises(InvalidPhone, match="invalid phone"):
        normalize_phone(garbage, "PL")
