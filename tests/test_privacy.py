"""No personal data (email, phone, name) in workflow input, state, results or history."""

from __future__ import annotations

import base64
import json
from typing import Any

from emulator.server import ProviderEmulator
from tests.conftest import make_scenario, run
from tests.test_lifecycle_journey import SIGNED_UP, purchase

EMAIL, PHONE, NAME = "zofia.kowalska@example.com", "+48601234567", "Zofia"


def _payload_texts(node: Any) -> list[str]:
    """Every payload of a history, decoded: where inputs, signals, results and queries live."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                found.append(base64.b64decode(value).decode("utf-8", "replace"))
            else:
                found += _payload_texts(value)
    elif isinstance(node, list):
        for item in node:
            found += _payload_texts(item)
    return found


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

    result = await run(scenario, record_histories=True, emulator=emulator)

    assert len(result.histories) >= 2
    failed = [entry for entry in result.timeline if entry.kind == "message" and entry.status == "failed"]
    assert len(failed) == 2 and any(PHONE in (entry.detail or "") for entry in failed), (
        "the ledger keeps the detail"
    )
    texts = [text for history in result.histories for text in _payload_texts(json.loads(history))]
    assert any("lifecycle" in text for text in texts), "the payloads were decoded"
    for secret in (EMAIL, PHONE, PHONE.removeprefix("+48"), NAME):
        assert not any(secret in text for text in texts), f"{secret!r} found in workflow history"
        assert all(secret not in history for history in result.histories)
    for view in result.journeys.values():
        assert NAME not in view.model_dump_json() and EMAIL not in view.model_dump_json()
