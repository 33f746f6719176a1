"""What the real clients send, and what the emulator answers, checked against the providers'
own OpenAPI descriptions (../shared/contracts, or CYKLO_CONTRACTS_DIR).

The emulator accepting a request proves little by itself: these tests make sure it is shaped
the way SendGrid and Twilio document it, so the emulator cannot drift into accepting
something the real providers would refuse."""

from __future__ import annotations

import json
import os
from email.utils import parsedate_to_datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import phonenumbers
import pytest
import requests

from activities.email import send_email
from activities.sms import send_sms, twilio_client
from emulator.server import ProviderEmulator
from settings import Settings
from tests.conftest import REPO, emulator_settings
from tests.test_providers import an_email

CONTRACTS = Path(os.environ.get("CYKLO_CONTRACTS_DIR") or REPO.parent / "shared" / "contracts")
SENDGRID_FILE = "tsg_mail_v3.json"
TWILIO_FILE = "twilio_api_v2010.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("phone-number", raises=phonenumbers.NumberParseException)
def _is_e164(instance: object) -> bool:
    if not isinstance(instance, str):
        return True  # formats constrain strings only
    return instance.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(instance, None))


@FORMATS.checks("date-time-rfc-2822", raises=(TypeError, ValueError))
def _is_rfc2822(instance: object) -> bool:
    return not isinstance(instance, str) or parsedate_to_datetime(instance).tzinfo is not None


@pytest.fixture
def settings(emulator: ProviderEmulator) -> Settings:
    return emulator_settings(emulator)


@cache
def contract(name: str) -> dict[str, Any]:
    path = CONTRACTS / name
    if not path.exists():
        pytest.skip(
            f"provider contract {path} not found: set CYKLO_CONTRACTS_DIR to the folder holding {name}"
        )
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Inline local $refs and turn OAS 3.0 `nullable` into JSON Schema, for jsonschema.

    (The contracts have no recursive schemas, so inlining terminates.)"""
    if isinstance(node, list):
        return [resolve(document, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        # OAS 3.1 lets keywords sit beside $ref (SendGrid's `disposition` does); both apply.
        resolved = resolve(document, target)
        return {"allOf": [resolved], **resolve(document, siblings)} if siblings else resolved
    schema = {key: resolve(document, value) for key, value in node.items() if key != "nullable"}
    # Both specs use `nullable` (SendGrid's ErrorResponse too, although it is OAS 3.1).
    if node.get("nullable"):
        if "type" in schema:
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        else:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def sendgrid_request_schema() -> dict[str, Any]:
    document = contract(SENDGRID_FILE)
    body = resolve(document, document["paths"]["/v3/mail/send"]["post"]["requestBody"])
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def sendgrid_error_schema(status: int) -> dict[str, Any]:
    document = contract(SENDGRID_FILE)
    answer = resolve(document, document["paths"]["/v3/mail/send"]["post"]["responses"][str(status)])
    schema: dict[str, Any] = answer["content"]["application/json"]["schema"]
    return schema


def twilio_operation() -> dict[str, Any]:
    document = contract(TWILIO_FILE)
    operation: dict[str, Any] = resolve(document, document["paths"][MESSAGES_PATH]["post"])
    return operation


def twilio_form_schema() -> dict[str, Any]:
    schema: dict[str, Any] = twilio_operation()["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]
    return schema


def twilio_message_schema() -> dict[str, Any]:
    schema: dict[str, Any] = twilio_operation()["responses"]["201"]["content"]["application/json"]["schema"]
    return schema


def problems(
    schema: dict[str, Any], instance: Any, draft: type[Any] = jsonschema.Draft202012Validator
) -> list[str]:
    validator = draft(schema, format_checker=FORMATS)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def coerce_form(form: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Form fields arrive as strings: turn each into the type its schema names, so the
    schema checks types; a value that does not convert stays a string and fails the check."""
    properties = schema.get("properties", {})
    return {key: _coerce(value, properties.get(key, {})) for key, value in form.items()}


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if schema.get("allOf"):
        kind = schema["allOf"][0].get("type")
    if isinstance(kind, list):
        kind = next(item for item in kind if item != "null")
    if kind == "array":
        return [
            _coerce(item, schema.get("items", {})) for item in (value if isinstance(value, list) else [value])
        ]
    if not isinstance(value, str):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return {"true": True, "false": False}[value.lower()]
    except (KeyError, ValueError):
        return value
    return value


# Characters that stress JSON and header encoding, so the contract sees more than plain ASCII.
AWKWARD_EMAIL: dict[str, Any] = {
    "to_name": "Ala Kowalska",
    "subject": "Dziękujemy za zamówienie — {[€]}",
    "html": "<p>Cześć Ala, <a href='https://shop.example.com/?a=1&b=2'>sklep</a></p>",
    "text": "Cześć Ala\nhttps://shop.example.com/?a=1&b=2",
    "custom_args": {"cyklo_message_id": "7", "customer_id": "c-1", "journey_id": "lifecycle"},
    "categories": ["lifecycle", "thank_you"],
}


# --- SendGrid -----------------------------------------------------------------------------


def test_emails_cyklo_sends_match_sendgrids_mail_send_request_schema(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    schema = sendgrid_request_schema()
    send_email(an_email(**AWKWARD_EMAIL), settings)
    send_email(
        an_email(
            **{**AWKWARD_EMAIL, "unsubscribe_url": None, "to_name": None, "custom_args": {}, "categories": []}
        ),
        settings,
    )

    bodies = [message.raw for message in emulator.messages("email")]
    assert len(bodies) == 2
    assert [problems(schema, body) for body in bodies] == [[], []]
    for body in bodies:
        # The spec does not forbid unknown fields, so check there are none.
        assert set(body) <= set(schema["properties"])
        personalization_fields = schema["properties"]["personalizations"]["items"]["properties"]
        assert set(body["personalizations"][0]) <= set(personalization_fields)


def test_sendgrid_schema_check_catches_what_sendgrid_would_refuse() -> None:
    schema = sendgrid_request_schema()
    good = {
        "personalizations": [{"to": [{"email": "ala@example.com"}], "custom_args": {"id": "7"}}],
        "from": {"email": "shop@example.com"},
        "subject": "Witaj",
        "content": [{"type": "text/plain", "value": "Cześć"}],
    }
    assert problems(schema, good) == []

    assert problems(schema, {"subject": "no recipients, no sender"})
    assert problems(schema, {**good, "from": {"email": "not an address"}})
    assert problems(schema, {**good, "content": [{"type": "text/plain", "value": ""}]})
    # Why cyklo puts correlation ids per personalization: the spec types top-level custom_args as a string.
    assert problems(schema, {**good, "custom_args": {"id": "7"}})


def test_emulators_sendgrid_answers_match_the_documented_responses(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    send_email(an_email(**AWKWARD_EMAIL), settings)
    (sent,) = emulator.messages("email")
    url = f"{emulator.url}/v3/mail/send"
    bearer = {"Authorization": "Bearer SG.test"}

    accepted = requests.post(url, json=sent.raw, headers=bearer, timeout=5)
    assert (accepted.status_code, accepted.content) == (202, b"")
    assert accepted.headers["X-Message-Id"]

    malformed = requests.post(url, json={"personalizations": []}, headers=bearer, timeout=5)
    assert malformed.status_code == 400
    assert {error["field"] for error in malformed.json()["errors"]} == {
        "personalizations",
        "from.email",
        "subject",
        "content",
    }
    assert problems(sendgrid_error_schema(400), malformed.json()) == []

    unauthorised = requests.post(url, json=sent.raw, timeout=5)
    assert unauthorised.status_code == 401
    assert problems(sendgrid_error_schema(401), unauthorised.json()) == []

    emulator.fail_next("email", 500)
    failed = requests.post(url, json=sent.raw, headers=bearer, timeout=5)
    assert failed.status_code == 500
    assert problems(sendgrid_error_schema(500), failed.json()) == []


# --- Twilio -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["Your order is on its way", "Dziękujemy za zamówienie! " * 4])
def test_sms_cyklo_sends_match_twilios_create_message_form(
    settings: Settings, emulator: ProviderEmulator, body: str
) -> None:
    schema = twilio_form_schema()
    send_sms("+48601234567", body, settings)

    (message,) = emulator.messages("sms")
    assert problems(schema, coerce_form(message.raw, schema), jsonschema.Draft7Validator) == []
    assert set(message.raw) <= set(schema["properties"])
    assert {"To", "From", "Body"} <= set(message.raw)


def test_twilio_form_check_catches_what_twilio_would_refuse() -> None:
    schema = twilio_form_schema()

    def check(form: dict[str, Any]) -> list[str]:
        return problems(schema, coerce_form(form, schema), jsonschema.Draft7Validator)

    good = {"To": "+48601234567", "From": "+48500000000", "Body": "hej", "ValidityPeriod": "600"}
    assert check(good) == []
    assert check({**good, "ProvideFeedback": "true", "MediaUrl": "https://example.com/a.png"}) == []

    assert check({"From": "+48500000000", "Body": "no recipient"})
    assert check({**good, "To": "601 234 567"})
    assert check({**good, "ValidityPeriod": "soon"})
    assert check({**good, "ProvideFeedback": "maybe"})
    assert check({**good, "ContentRetention": "forever"})


def test_emulators_twilio_answer_matches_the_message_schema_and_the_client_reads_it(
    settings: Settings, emulator: ProviderEmulator
) -> None:
    schema = twilio_message_schema()
    account_schema = next(
        parameter["schema"]
        for parameter in twilio_operation()["parameters"]
        if parameter["name"] == "AccountSid"
    )
    assert problems(account_schema, settings.twilio_account_sid) == []

    created = twilio_client(settings).messages.create(
        to="+48601234567", from_=settings.sms_from, body="Dziękujemy za zamówienie! " * 3
    )
    (sent,) = emulator.messages("sms")
    answer = requests.post(
        f"{emulator.url}{MESSAGES_PATH.format(AccountSid=settings.twilio_account_sid)}",
        data=sent.raw,
        auth=(settings.twilio_account_sid, settings.twilio_auth_token),
        timeout=5,
    )

    assert answer.status_code == 201
    assert problems(schema, answer.json(), jsonschema.Draft7Validator) == []
    assert set(answer.json()) == set(schema["properties"]), "every documented field, and nothing else"
    assert (created.sid, created.status, created.to, created.num_segments) == (
        sent.provider_id,
        "queued",
        "+48601234567",
        "2",
    )
    assert created.date_created is not None and created.date_created.tzinfo is not None, (
        "parsed, not left a string"
    )


def test_twilio_message_schema_check_is_not_vacuous() -> None:
    schema = twilio_message_schema()

    assert problems(schema, {"sid": "XX123", "status": "queued"}, jsonschema.Draft7Validator)
    assert problems(schema, {"status": "posted"}, jsonschema.Draft7Validator)
    assert problems(schema, {"date_created": "2026-03-02T10:00:00Z"}, jsonschema.Draft7Validator)
    assert problems(schema, {"error_code": None, "price": None}, jsonschema.Draft7Validator) == []
