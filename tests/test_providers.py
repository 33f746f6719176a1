"""The real SendGrid and Twilio clients over HTTP, and what their answers mean to cyklo."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from activities.email import OutgoingEmail, send_email
from activities.provider_errors import InvalidPhone, ProviderAmbiguous, ProviderRejected, ProviderRetryable
from activities.sms import normalize_phone, send_sms, sms_encoding
from emulator.server import ProviderEmulator
from settings import Settings
from tests.conftest import REPO, emulator_settings

CONTRACTS = Path(os.environ.get("CYKLO_CONTRACTS_DIR", REPO.parent / "shared" / "contracts"))


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


def test_email_reaches_sendgrid_with_correlation_ids_and_one_click_unsubscribe(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    provider_id = send_email(an_email(), settings)

    (message,) = emulator.messages("email")
    assert message.provider_id == provider_id
    assert (message.to, message.subject, message.html, message.text) == (
        "ala@example.com",
        "Witaj",
        "<p>Cześć</p>",
        "Cześć",
    )
    assert message.custom_args == {"cyklo_message_id": "7"}
    assert message.headers["List-Unsubscribe"] == "<https://shop.example.com/unsubscribe?m=7>"
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_sms_reaches_twilio_in_e164(settings: Settings, emulator: ProviderEmulator) -> None:
    sid = send_sms("+48601234567", "Dziękujemy!", settings)

    (message,) = emulator.messages("sms")
    assert sid.startswith("SM") and message.provider_id == sid
    assert (message.to, message.body) == ("+48601234567", "Dziękujemy!")


def test_sendgrid_429_is_retryable_with_its_retry_after(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    emulator.fail_next("email", 429, retry_after=7)

    with pytest.raises(ProviderRetryable) as error:
        send_email(an_email(), settings)

    assert error.value.retry_after == 7
    assert emulator.messages("email") == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_sendgrid_5xx_is_retryable(settings: Settings, emulator: ProviderEmulator, status: int) -> None:
    emulator.fail_next("email", status)

    with pytest.raises(ProviderRetryable):
        send_email(an_email(), settings)


def test_provider_down_is_retryable(settings: Settings, emulator: ProviderEmulator) -> None:
    emulator.stop()

    with pytest.raises(ProviderRetryable):
        send_email(an_email(), settings)
    with pytest.raises(ProviderRetryable):
        send_sms("+48601234567", "hej", settings)


def test_sendgrid_400_is_permanent(settings: Settings, emulator: ProviderEmulator) -> None:
    emulator.fail_next("email", 400)

    with pytest.raises(ProviderRejected) as error:
        send_email(an_email(), settings)

    assert error.value.code == "400"


@pytest.mark.parametrize("code", [21610, 21211, 21614])
def test_twilio_permanent_codes_are_rejections(
    settings: Settings, emulator: ProviderEmulator, code: int
) -> None:
    emulator.fail_next("sms", 400, code=code)

    with pytest.raises(ProviderRejected) as error:
        send_sms("+48601234567", "hej", settings)

    assert error.value.code == str(code)


def test_twilio_429_is_retryable(settings: Settings, emulator: ProviderEmulator) -> None:
    emulator.fail_next("sms", 429, code=20429)

    with pytest.raises(ProviderRetryable):
        send_sms("+48601234567", "hej", settings)


def test_twilio_refuses_an_invalid_number_with_21211(settings: Settings) -> None:
    with pytest.raises(ProviderRejected) as error:
        send_sms("+4812", "hej", settings)

    assert error.value.code == "21211"


def test_polish_numbers_are_normalised_to_e164_and_extensions_refused() -> None:
    assert normalize_phone("601 234 567", "PL") == "+48601234567"
    assert normalize_phone("+48 601-234-567", "PL") == "+48601234567"
    with pytest.raises(InvalidPhone, match="extension"):
        normalize_phone("+48 22 123 45 67 ext. 12", "PL")
    with pytest.raises(InvalidPhone):
        normalize_phone("not a number", "PL")


def test_plain_text_is_gsm7_with_160_characters_a_segment() -> None:
    assert sms_encoding("a" * 160) == ("GSM-7", 1)
    assert sms_encoding("a" * 161) == ("GSM-7", 2)
    assert sms_encoding("€" * 80) == ("GSM-7", 1)
    assert sms_encoding("€" * 81) == ("GSM-7", 2)


def test_polish_letters_force_ucs2_and_shorter_segments() -> None:
    assert sms_encoding("ą" * 70) == ("UCS-2", 1)
    assert sms_encoding("Dziękujemy" + "a" * 61) == ("UCS-2", 2)
    assert sms_encoding("ż" * 134) == ("UCS-2", 2)
    assert sms_encoding("ż" * 135) == ("UCS-2", 3)


# --- the providers' own OpenAPI descriptions ---------------------------------------------


@pytest.fixture
def contracts() -> Iterator[Path]:
    if not (CONTRACTS / "tsg_mail_v3.json").exists():
        pytest.skip(f"provider contracts not found in {CONTRACTS} (set CYKLO_CONTRACTS_DIR)")
    yield CONTRACTS


def _resolve(document: dict[str, Any], node: Any) -> Any:
    """Inline local $refs and turn OAS 3.0 `nullable` into JSON Schema, for jsonschema."""
    if isinstance(node, dict):
        if "$ref" in node and node["$ref"].startswith("#/"):
            target: Any = document
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _resolve(document, target)
        resolved = {key: _resolve(document, value) for key, value in node.items() if key != "nullable"}
        if node.get("nullable") and "type" in resolved:
            resolved["type"] = [resolved["type"], "null"]
        return resolved
    if isinstance(node, list):
        return [_resolve(document, item) for item in node]
    return node


def test_emails_sent_by_cyklo_match_sendgrid_mail_send_schema(
    settings: Settings, emulator: ProviderEmulator, contracts: Path
) -> None:
    document = json.loads((contracts / "tsg_mail_v3.json").read_text())
    body = document["paths"]["/v3/mail/send"]["post"]["requestBody"]
    schema = _resolve(document, body)["content"]["application/json"]["schema"]
    send_email(an_email(), settings)
    send_email(an_email(unsubscribe_url=None, to_name=None), settings)

    validator = jsonschema.Draft202012Validator(schema)
    bodies = [message.raw for message in emulator.messages("email")]
    assert len(bodies) == 2
    assert [list(validator.iter_errors(body)) for body in bodies] == [[], []]


def test_sms_sent_by_cyklo_match_twilio_create_message_schema_and_the_answer_parses(
    settings: Settings, emulator: ProviderEmulator, contracts: Path
) -> None:
    document = json.loads((contracts / "twilio_messages_subset.json").read_text())
    operation = document["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    request_schema = _resolve(document, operation["requestBody"])["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]
    response_schema = _resolve(document, operation["responses"]["201"])["content"]["application/json"][
        "schema"
    ]
    send_sms("+48601234567", "Dziękujemy za zamówienie!", settings)

    (message,) = emulator.messages("sms")
    jsonschema.Draft7Validator(request_schema).validate(message.raw)
    assert set(message.raw) <= set(request_schema["properties"])
    assert {"To", "From", "Body"} <= set(message.raw)
    sid = settings.twilio_account_sid
    answer = requests.post(
        f"{emulator.url}/2010-04-01/Accounts/{sid}/Messages.json",
        data={"To": "+48601234567", "From": settings.sms_from, "Body": "hej"},
        auth=(sid, settings.twilio_auth_token),
        timeout=5,
    )
    assert answer.status_code == 201
    jsonschema.Draft7Validator(response_schema).validate(answer.json())


def test_a_malformed_request_would_fail_the_contract_check(contracts: Path) -> None:
    document = json.loads((contracts / "tsg_mail_v3.json").read_text())
    body = document["paths"]["/v3/mail/send"]["post"]["requestBody"]
    schema = _resolve(document, body)["content"]["application/json"]["schema"]

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({"subject": "no recipients"})


def test_no_answer_after_the_request_went_out_is_ambiguous_not_retryable(emulator: ProviderEmulator) -> None:
    settings = emulator_settings(emulator, provider_timeout_seconds=1)
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
