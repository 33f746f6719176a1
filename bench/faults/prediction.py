"""What every customer's ledger must hold: the real workflow, simulated, per event pattern.

A customer of the load follows one pattern (sign-up only; sign-up and a purchase; …). Each
pattern, and each of its prefixes (what the ledger must hold after the first k events), is
run once through `simulation.runner.simulate` on the time-skipping server, with the same
profile as the load's customers and events a minute apart. The load lasts minutes, not
days: only the messages the simulation sends within `window` of the start are due, which
for the lifecycle journey are the immediate ones (welcome, thank-you, loyalty, VIP); the
nudges and reminders days later are outside it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from simulation.runner import simulate
from simulation.scenario import Scenario
from storage.customers import CustomerProfile

MessageKey = tuple[str, str, str]
"""(journey, channel, template): what one ledger row is about."""


@dataclass(frozen=True)
class Pattern:
    name: str
    events: tuple[tuple[str, dict[str, Any]], ...]
    """(type, properties) in the order the shop sends them."""


def purchase(amount: float, category: str = "shoes") -> tuple[str, dict[str, Any]]:
    return ("purchase", {"amount": amount, "category": category})


SIGN_UP: tuple[str, dict[str, Any]] = ("signed_up", {})

PATTERNS = (
    Pattern("sign-up only", (SIGN_UP,)),
    Pattern("sign-up + purchase", (SIGN_UP, purchase(120.0))),
    Pattern("sign-up + 2 purchases", (SIGN_UP, purchase(120.0), purchase(80.0, "bags"))),
    Pattern("sign-up + purchase + VIP-sized purchase", (SIGN_UP, purchase(120.0), purchase(2500.0))),
    Pattern("VIP-sized first order", (purchase(2400.0, "watches"),)),
)


@dataclass(frozen=True)
class Expected:
    """The ledger rows due after a prefix of a pattern: status per message key."""

    rows: Counter[tuple[MessageKey, str]]

    def sent(self) -> Counter[MessageKey]:
        return Counter({key: n for (key, status), n in self.rows.items() if status == "sent"})

    def total(self) -> int:
        return sum(self.rows.values())


def profile(customer_id: str, number: int, timezone: str) -> CustomerProfile:
    """One load customer (and the simulated one): own email and phone, so every message the
    emulator receives names its customer; consents to email and SMS."""
    return CustomerProfile.model_validate(
        {
            "id": customer_id,
            "email": f"{customer_id}@example.com",
            "phone": phone_number(number),
            "first_name": "Fault",
            "locale": "pl",
            "timezone": timezone,
            "consents": {"email": True, "sms": True, "source": "fault suite"},
        }
    )


def phone_number(number: int) -> str:
    # Polish mobile numbers, 601 000 000 onwards: valid for Twilio's (and the emulator's) check.
    return f"+48601{number:06d}"


async def predict(journeys: Path, timezone: str, window: timedelta) -> dict[tuple[str, int], Expected]:
    """Per (pattern name, number of events sent): the rows due."""
    found: dict[tuple[str, int], Expected] = {}
    # Patterns share prefixes (every one starts with a sign-up): each is simulated once.
    simulated: dict[str, Expected] = {}
    start = datetime.now(ZoneInfo(timezone)).replace(microsecond=0)
    for pattern in PATTERNS:
        for length in range(1, len(pattern.events) + 1):
            prefix = repr(pattern.events[:length])
            if prefix in simulated:
                found[(pattern.name, length)] = simulated[prefix]
                continue
            scenario = Scenario.model_validate(
                {
                    "customer": profile("simulated", 0, timezone).model_dump(),
                    "start": start.isoformat(),
                    "events": [
                        {"at": f"{index}m", "type": kind, "id": f"sim-{index}", "properties": properties}
                        for index, (kind, properties) in enumerate(pattern.events[:length])
                    ],
                    "until": f"{int(window.total_seconds())}s",
                }
            )
            result = await simulate([journeys], scenario)
            expected = Expected(
                Counter(
                    ((entry.journey, entry.channel or "", entry.template or ""), entry.status or "")
                    for entry in result.timeline
                    if entry.kind == "message"
                )
            )
            simulated[prefix] = found[(pattern.name, length)] = expected
    return found
