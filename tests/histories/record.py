"""Records event histories of the default journeys for the replay test.

Run after a change that should be replay-safe only to ADD new histories; the existing
ones are the contract that old running journeys keep working:
    python -m tests.histories.record NAME
They are written decrypted, so they stay readable and replay under any key.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from payload_encryption import new_payload_key
from tests.conftest import make_scenario, run
from tests.payloads import decrypted
from tests.test_lifecycle_journey import SIGNED_UP, purchase

HERE = Path(__file__).parent


def scenarios() -> dict[str, object]:
    cart = {"type": "cart_abandoned", "properties": {"cart_id": "k-1", "value": 120.0}}
    return {
        "lifecycle_year": make_scenario(
            SIGNED_UP,
            purchase("1d", "e-1"),
            purchase("20d", "e-2", amount=900.0),
            purchase("40d", "e-3", amount=1200.0),
            purchase("300d", "e-4"),
            {**cart, "at": "301d"},
            start="2026-03-02T22:30:00+01:00",
            until="365d",
            id="c-replay",
        ),
        "continue_as_new": make_scenario(
            *[purchase(f"{day}d", f"e-{day}", amount=30.0) for day in range(6)], until="7d", id="c-can"
        ),
    }


async def record(name: str) -> None:
    options = {"events_per_run": 3} if name == "continue_as_new" else {}
    keys = new_payload_key("record")
    result = await run(scenarios()[name], record_histories=True, payload_keys=keys, **options)  # type: ignore[arg-type]
    for index, history in enumerate(result.histories):
        target = HERE / f"{name}_{index}.json"
        target.write_text(json.dumps(await decrypted(json.loads(history), keys), indent=1) + "\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1]))
