"""The API matches its OpenAPI and gives no 500 on any input: declared bodies and answers, one
error shape, bounded JSON, control characters refused before they reach Temporal."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api import bounded_json
from api.app import create_app
from settings import Settings
from tests.conftest import JOURNEYS, REPO, World

KEY = "contract-test-key-0001"
AS_ANYONE = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app(Settings(api_keys=f"{KEY}=events", allow_unencrypted_payloads=True)).openapi()


@pytest.fixture
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    settings = world.settings.model_copy(
        update={"journeys_dir": JOURNEYS, "api_keys": f"{KEY}=events,support:read,support:write,reports"}
    )
    app = create_app(settings, client=world.env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cyklo.test") as client:
            yield client


def _schema(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in schema:
        return schema
    found: dict[str, Any] = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return found


def test_request_bodies_of_profile_and_events_are_declared(openapi: dict[str, Any]) -> None:
    put = openapi["paths"]["/v1/customers/{customer_id}"]["put"]["requestBody"]["content"]["application/json"]
    events = openapi["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]

    profile = _schema(openapi, put["schema"])
    assert {"email", "phone", "locale", "timezone", "consents"} <= set(profile["properties"])
    one, batch = events["schema"]["anyOf"]
    assert _schema(openapi, one)["required"] == ["customer_id", "type"]
    assert batch["maxItems"] == 1000 and batch["items"] == one


def test_every_refusal_is_declared_with_the_one_error_shape(openapi: dict[str, Any]) -> None:
    keyed = [
        (path, method, operation)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    ]

    assert len(keyed) == 18
    for path, method, operation in keyed:
        codes = set(operation["responses"])
        # A Segment write key (Basic) has no scopes: its routes never answer 403.
        refusals = ("401", "403") if operation["security"] == [{"HTTPBearer": []}] else ("401",)
        # /metrics takes no input and answers without Temporal (then without its counts).
        expected = set(refusals) if path == "/metrics" else {*refusals, "422", "503"}
        assert expected <= codes, (method, path)
        for code in refusals:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}
        if "503" in expected:
            assert "Retry-After" in operation["responses"]["503"]["headers"]
    events = openapi["paths"]["/v1/events"]["post"]["responses"]
    assert {"202", "413", "429"} <= set(events)
    assert "409" in openapi["paths"]["/v1/customers/{customer_id}/journeys/{journey_id}/{action}"]["post"]["responses"]
    assert "404" in openapi["paths"]["/v1/customers/{customer_id}"]["get"]["responses"]


def test_limit_is_declared_from_one_to_a_thousand(openapi: dict[str, Any]) -> None:
    parameters = openapi["paths"]["/v1/journeys/{journey_id}/customers"]["get"]["parameters"]
    limit = next(parameter for parameter in parameters if parameter["name"] == "limit")

    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"[" * 100_000, "body", "nested too deep"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "body", "nested too deep"),
        (b'{"p":' * 40 + b"1" + b"}" * 40, "p.p.p", "nested too deep"),
        (b'{"amount": NaN}', "body", "NaN is not a JSON number"),
        (b'{"amount": -Infinity}', "body", "-Infinity is not a JSON number"),
        (b'{"amount": 1e400}', "amount", "out of range"),
        (b'{"properties": {"x": "\\udcff"}}', "properties.x", "lone surrogate"),
        (b'{"\\ud800": 1}', "body", "lone surrogate"),
        (b"{", "body", "not JSON"),
    ],
)
def test_bad_json_is_refused_with_the_place_named(body: bytes, field: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(bounded_json.BadJson) as refused:
        bounded_json.parse(body)

    assert message in refused.value.message
    assert refused.value.field.startswith(field)
    # Named so that the answer itself is valid JSON: never a lone surrogate of the body's.
    refused.value.field.encode("utf-8")
    assert time.monotonic() - started < 1


def test_good_json_passes_whole() -> None:
    body = b'{"type": "purchase", "properties": {"amount": 12.5, "items": [[1, 2], {"a": null}], "emoji": "\\ud83d\\ude00"}}'

    assert bounded_json.parse(body)["properties"] == {"amount": 12.5, "items": [[1, 2], {"a": None}], "emoji": "😀"}


async def test_deep_json_gets_422_not_a_server_error(api: httpx.AsyncClient) -> None:
    headers = {**AS_ANYONE, "Content-Type": "application/json"}
    events = await api.post("/v1/events", content=b"[" * 100_000, headers=headers)
    profile = await api.put("/v1/customers/c-1", content=b'{"attributes":' * 5_000 + b"{}" + b"}" * 5_000, headers=headers)
    action = await api.post(
        "/v1/customers/c-1/journeys/lifecycle/pause", content=b'{"by":' * 5_000 + b"1" + b"}" * 5_000, headers=headers
    )

    for answer in (events, profile, action):
        assert answer.status_code == 422
        assert "nested too deep" in answer.json()["detail"][0]["message"]


async def test_control_characters_in_the_stage_filter_get_422_at_once(api: httpx.AsyncClient) -> None:
    started = time.monotonic()
    answer = await api.get("/v1/journeys/lifecycle/customers", params={"stage": "vip\x00"}, headers=AS_ANYONE)

    assert answer.status_code == 422
    assert answer.json() == {
        "detail": [{"field": "stage", "message": "must not contain control characters (NUL, tab, newline, ...)"}]
    }
    assert time.monotonic() - started < 1


async def test_control_characters_in_an_id_get_422_naming_it(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/customers/c%00-1", headers=AS_ANYONE)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "customer_id"


async def test_limit_below_one_is_refused_not_an_empty_list(api: httpx.AsyncClient) -> None:
    for limit in ("0", "-5", "1001"):
        answer = await api.get("/v1/journeys/lifecycle/customers", params={"limit": limit}, headers=AS_ANYONE)

        assert answer.status_code == 422
        assert answer.json()["detail"][0]["field"] == "limit"


async def test_framework_validation_uses_the_declared_error_shape(api: httpx.AsyncClient) -> None:
    answer = await api.post(
        "/v1/customers/c-1/journeys/lifecycle/pause", json={"reason": "x" * 501}, headers=AS_ANYONE
    )
    unknown_action = await api.post("/v1/customers/c-1/journeys/lifecycle/dance", json={}, headers=AS_ANYONE)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "reason"
    assert set(answer.json()["detail"][0]) == {"field", "message"}
    assert unknown_action.status_code == 422 and unknown_action.json()["detail"][0]["field"] == "action"


async def test_types_are_not_coerced_past_what_is_declared(api: httpx.AsyncClient) -> None:
    event = {"customer_id": "c-1", "type": "visit", "occurred_at": 0}
    profile = {"locale": "pl", "consents": {"email": 1}}

    events = await api.post("/v1/events", json=event, headers=AS_ANYONE)
    saved = await api.put("/v1/customers/c-1", json=profile, headers=AS_ANYONE)

    assert events.status_code == 422 and events.json()["results"][0]["errors"][0]["field"] == "occurred_at"
    assert saved.status_code == 422 and saved.json()["detail"][0]["field"] == "consents.email"


async def test_a_non_text_event_id_is_rejected_not_a_server_error(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/events", json=[{"event_id": 2.5, "customer_id": "c-1", "type": "visit"}], headers=AS_ANYONE)

    assert answer.status_code == 422
    assert answer.json()["results"][0] == {
        "index": 0,
        "event_id": None,
        "status": "rejected",
        "errors": [{"field": "event_id", "message": "Input should be a valid string"}],
        "warning": None,
    }


async def test_a_wrong_method_names_every_method_of_the_path(api: httpx.AsyncClient) -> None:
    answer = await api.request("PATCH", "/v1/customers/c-1", headers=AS_ANYONE)

    assert answer.status_code == 405
    assert {"GET", "PUT", "DELETE"} <= set(answer.headers["Allow"].split(", "))


def test_schemathesis_finds_nothing_against_the_running_api() -> None:
    """A small run of what .ci/run runs in full: the real stack, every check."""
    finished = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "tests.contract", "--max-examples", "8", "--seed", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert finished.returncode == 0, finished.stdout[-6000:]
    # "N generated, N passed": every generated request got an answer that passed every check.
    assert re.search(r"\b(\d+) generated, \1 passed", finished.stdout), finished.stdout[-3000:]
