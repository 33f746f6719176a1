"""What the shop does to cyklo during a benchmark: sign-ups in batches, purchases at a rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from emulator.server import ProviderEmulator

SIGNUP_BATCH = 50
"""Events per request: a shop importing or replaying sign-ups sends batches."""


class ShopClient:
    """`api_url`: one API, or several (scale-out) that take the requests in turn."""

    def __init__(self, api_url: str | list[str], api_key: str) -> None:
        self.apis = [
            httpx.AsyncClient(
                base_url=url,
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=120,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
            )
            for url in ([api_url] if isinstance(api_url, str) else api_url)
        ]
        self.http = self.apis[0]
        self._turn = 0

    async def __aenter__(self) -> ShopClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        for http in self.apis:
            await http.aclose()

    async def post_events(self, events: list[dict[str, Any]]) -> None:
        self._turn += 1
        response = await self.apis[self._turn % len(self.apis)].post("/v1/events", json=events)
        if response.status_code != 202:
            raise RuntimeError(f"POST /v1/events answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        if body["accepted"] != len(events):
            raise RuntimeError(f"POST /v1/events accepted {body['accepted']} of {len(events)}: {body}")

    async def sign_up(
        self, customer_ids: list[str], concurrency: int, advance: Callable[[int], None] = lambda _: None
    ) -> None:
        """Every customer's signed_up event, `concurrency` events in flight at most."""
        batches = [
            customer_ids[start : start + SIGNUP_BATCH] for start in range(0, len(customer_ids), SIGNUP_BATCH)
        ]
        gate = asyncio.Semaphore(max(1, concurrency // SIGNUP_BATCH))

        async def one(batch: list[str]) -> None:
            async with gate:
                await self.post_events(
                    [{"customer_id": c, "type": "signed_up", "event_id": f"signup-{c}"} for c in batch]
                )
            advance(len(batch))

        await asyncio.gather(*(one(batch) for batch in batches))


@dataclass
class Purchase:
    customer_id: str
    sent_at: float
    accepted_at: float = 0.0


async def purchases_at_rate(
    shop: ShopClient, customer_ids: list[str], rate: float, advance: Callable[[int], None] = lambda _: None
) -> list[Purchase]:
    """One purchase per customer, one request each, started on a fixed schedule (open loop):
    a slow answer does not slow the next purchase down, as it would not at a real shop."""
    purchases = [Purchase(customer_id=c, sent_at=0.0) for c in customer_ids]
    start = time.time()

    async def one(index: int, purchase: Purchase) -> None:
        await asyncio.sleep(max(0.0, start + index / rate - time.time()))
        purchase.sent_at = time.time()
        await shop.post_events(
            [
                {
                    "customer_id": purchase.customer_id,
                    "type": "purchase",
                    "event_id": f"order-{purchase.customer_id}-{index}",
                    "properties": {"order_id": f"o-{index}", "amount": 120.0, "category": "shoes"},
                }
            ]
        )
        purchase.accepted_at = time.time()
        advance(1)

    await asyncio.gather(*(one(index, purchase) for index, purchase in enumerate(purchases)))
    return purchases


def emails_arrived(emulator: ProviderEmulator, template: str, customer_ids: set[str]) -> dict[str, datetime]:
    """When the emulator received each customer's email of this template (the first one)."""
    found: dict[str, datetime] = {}
    for message in emulator.messages("email"):
        customer = message.custom_args.get("customer_id")
        if customer in customer_ids and template in message.categories and customer not in found:
            found[customer] = message.received_at
    return found


async def wait_for_emails(
    emulator: ProviderEmulator,
    template: str,
    customer_ids: set[str],
    timeout: float,
    advance: Callable[[int], None] = lambda _: None,
    feeding: asyncio.Task[None] | None = None,
) -> dict[str, datetime]:
    """Every customer's email of this template; `feeding` is the task sending the events,
    whose failure ends the wait with its own reason."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        if feeding is not None and feeding.done():
            feeding.result()
        found = emails_arrived(emulator, template, customer_ids)
        advance(len(found) - seen)
        seen = len(found)
        if len(found) == len(customer_ids):
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(customer_ids) - len(found)} of {len(customer_ids)} {template} emails had not "
                f"arrived after {timeout:.0f} s: see worker.log in the benchmark folder"
            )
        await asyncio.sleep(0.25)
