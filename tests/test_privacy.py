"""No personal data (email, phone, name) in workflow input, state, results or history;
and what history does hold is encrypted."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx

from definition.events import declared
from emulator.server import ProviderEmulator
from payload_encryption import new_payload_key
from tests.conftest import World, make_scenario, run
from tests.payloads import decrypted, payloads, text
from tests.test_api import ALA, AS_SHOP, api, signed_up
from tests.test_lifecycle_journey import SIGNED_UP, purchase
from workflows.interface import workflow_id

__all__ = ["api"]  # the API fixture, on the time-skipping server with a worker

EMAIL, PHONE, NAME = "zofia.kowalska@example.com", "+48601234567", "Zofia"


async def test_a_customer_year_leaves_no_personal_data_in_history(emulator: ProviderEmulator) -> None:
    # Provider errors quote the number or address: they must stay out of history too.
    emulator.fail_next("sms", 400, code=21211)
    emulator.fail_next("email", 400)
    scenario = make_scenario(
        SIGNED_UP,
        purchase("1d", "e-1"),
        purchase("10d", "e-2", amount=2500.0),
        {"at": "20d", "type": "cart_abandoned", "properties": {"cart_id": "k-1"}},
        until="200d",
        email=EMAIL,
        phone=PHONE,
        first_name=NAME,
    )
    keys = new_payload_key("k1")

    result = await run(scenario, record_histories=True, emulator=emulator, payload_keys=keys)

    assert len(result.histories) >= 2
    failed = [entry for entry in result.timeline if entry.kind == "message" and entry.status == "failed"]
    assert len(failed) == 2 and any(PHONE in (entry.detail or "") for entry in failed), (
        "the ledger keeps the detail"
    )
    # Encryption is the second line of defence; the first is that nothing personal is sent
    # to Temporal at all, which is what the decrypted history shows.
    plain = [await decrypted(json.loads(history), keys) for history in result.histories]
    texts = [text(payload) for history in plain for _, payload in payloads(history)]
    assert any("lifecycle" in found for found in texts), "the payloads were decrypted"
    for secret in (EMAIL, PHONE, PHONE.removeprefix("+48"), NAME):
        assert not any(secret in found for found in texts), f"{secret!r} found in workflow history"
        assert all(secret not in history for history in result.histories)
    for view in result.journeys.values():
        assert NAME not in view.model_dump_json() and EMAIL not in view.model_dump_json()


async def test_events_through_the_api_leave_only_declared_properties_in_history(
    api: httpx.AsyncClient, world: World
) -> None:
    await api.put("/v1/customers/c-ala", json=ALA, headers=AS_SHOP)
    attempts = [
        purchase_event("e-1", phone_number=PHONE),
        purchase_event("e-2", e_mail=EMAIL),
        purchase_event("e-3", lastName="Kowalska", contact=NAME, mobile="601234567", ip_address="10.0.0.1"),
        purchase_event("e-4", category=f"prezent dla {EMAIL}"),
        purchase_event("e-5", category=f"tel. {PHONE}"),
        {**purchase_event("e-6"), "type": "cart_abandoned", "properties": {"cart_id": "k-1", "owner": NAME}},
    ]
    refused = [await api.post("/v1/events", json=attempt, headers=AS_SHOP) for attempt in attempts]
    taken = await api.post(
        "/v1/events",
        json=[
            signed_up("e-10"),
            purchase_event("e-11"),
            {**purchase_event("e-12"), "type": "cart_abandoned", "properties": {"cart_id": "k-1", "value": 9.5}},
        ],
        headers=AS_SHOP,
    )
    await world.env.sleep(timedelta(hours=2))

    assert [answer.status_code for answer in refused] == [422] * len(attempts)
    assert taken.status_code == 202 and taken.json()["accepted"] == 3
    texts = []
    for journey in ("lifecycle", "abandoned_cart"):
        history = await world.env.client.get_workflow_handle(workflow_id(journey, "c-ala")).fetch_history()
        plain = await decrypted(json.loads(history.to_json()), world.settings.payload_keys)
        texts += [text(payload) for _, payload in payloads(plain)]
    assert any('"cart_id"' in found for found in texts), "the payloads were decrypted"
    for secret in (EMAIL, PHONE, PHONE.removeprefix("+48"), NAME, "Kowalska", "10.0.0.1"):
        assert not any(secret in found for found in texts), f"{secret!r} found in workflow history"
    events = [found for text in texts for found in _events_in(_json_or_none(text))]
    assert events
    for event in events:
        assert set(event["properties"]) <= set(declared(event["type"])), event


def purchase_event(event_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": "c-ala",
        "type": "purchase",
        "properties": {"order_id": f"o-{event_id}", "amount": 120.0, "category": "shoes", **properties},
    }


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _events_in(node: Any) -> list[dict[str, Any]]:
    """Every event-shaped object (a type and properties) in a decoded payload."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and isinstance(node.get("properties"), dict):
            found.append(node)
        for value in node.values():
            found += _events_in(value)
    elif isinstance(node, list):
        for item in node:
            found += _events_in(item)
    return found
