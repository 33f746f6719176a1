"""The cost line: CPU a customer of the lifecycle journey costs a month, from measured rounds.

A customer-year of the lifecycle journey (scenarios/sample.yaml: about 15 messages) is taken
as one sign-up (its welcome) and seven purchases, each a thank-you email and an SMS: 1 + 7 × 2
= 15 messages. The sign-up's CPU is the throughput rounds' (every process, median round), a
purchase's the cached latency rounds' (every process, per purchase). Sleeping costs no CPU:
a timer in the server's database.
"""

from __future__ import annotations

import statistics
from typing import Any

PURCHASES_PER_YEAR = 7
HEADROOM_PERCENT = 50
"""Of the box's CPU kept free for peaks (sign-up campaigns, a timer burst)."""
SECONDS_PER_MONTH = 365.25 * 86400 / 12


def cost_line(results: dict[str, Any]) -> dict[str, Any] | None:
    throughput, latency = results.get("throughput"), results.get("latency")
    if not throughput or not latency:
        return None
    sign_up_ms = statistics.median(
        pair["cyklo"]["explained"]["cpu_ms_per_customer_total"] for pair in throughput["rounds"]
    )
    purchase_ms = statistics.median(
        pair["cyklo"]["explained"]["cpu_ms_per_customer_total"] for pair in latency["cached"]["rounds"]
    )
    year_ms = sign_up_ms + PURCHASES_PER_YEAR * purchase_ms
    per_1000_months = year_ms / 12  # ms per customer-month × 1,000 customers = s per 1,000 months
    box = 2 * SECONDS_PER_MONTH * (1 - HEADROOM_PERCENT / 100)
    return {
        "sign_up_cpu_ms": round(sign_up_ms, 1),
        "purchase_cpu_ms": round(purchase_ms, 1),
        "purchases_per_year": PURCHASES_PER_YEAR,
        "cpu_seconds_per_1000_customer_months": round(per_1000_months, 2),
        "headroom_percent": HEADROOM_PERCENT,
        "customers_per_box": int(box / (per_1000_months / 1000)),
    }
