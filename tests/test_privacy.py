"""No personal data (email, phone, name) in workflow input, state, results or history;
and what history does hold is encrypted."""

from __future__ import annotations

import json

from emulator.server import ProviderEmulator
from payload_encryption import new_payload_key
from tests.conftest import make_scenario, run
from tests.payloads import decrypted, payloads, text
from tests.test_lifecycle_journey import SIGNED_UP, purchase

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
