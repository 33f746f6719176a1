"""The customer metrics a journey may use: order count and value, points, reactions.

Only non-personal numbers live here; they travel in workflow state and history.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, assert_never

from pydantic import BaseModel

from definition.events import MEANINGS, EventType, Meaning, meaning

POINTS_VALIDITY = timedelta(days=365)
"""Loyalty points (1 per 1 PLN) expire this long after the last purchase."""
ROLLING_YEAR = timedelta(days=365)
FAVOURITES = 3
METRIC_EVENTS = frozenset(MEANINGS)
"""Events every journey receives, whatever it waits for: the metrics are made of them."""


class Purchase(BaseModel):
    at: datetime
    amount: float
    category: str | None = None


class Metrics(BaseModel):
    orders: int = 0
    total_spent: float = 0.0
    recent_purchases: list[Purchase] = []
    """Purchases of the last 365 days, oldest first; older ones are pruned."""
    last_purchase_at: datetime | None = None
    points: int = 0
    category_counts: dict[str, int] = {}
    reactions: dict[str, int] = {}
    """Counts of email_opened, email_clicked, ... events."""

    def record(self, event_type: str, properties: Mapping[str, Any], occurred_at: datetime, now: datetime) -> None:
        """Count an event that means something to the metrics (definition.events.MEANINGS)."""
        match meaning(event_type):
            case None:
                return
            case Meaning.ORDER:
                amount = properties.get("amount", 0)
                self.record_purchase(
                    # An order stamped in the future counts from now: points must not outlive it.
                    min(occurred_at, now),
                    float(amount) if isinstance(amount, (int, float)) else 0.0,
                    properties.get("category"),
                )
            case Meaning.REACTION:
                self.record_reaction(event_type)
            case unknown:
                assert_never(unknown)

    def record_purchase(self, at: datetime, amount: float, category: str | None) -> None:
        if self.last_purchase_at is not None and at - self.last_purchase_at > POINTS_VALIDITY:
            self.points = 0
        self.orders += 1
        self.total_spent = round(self.total_spent + amount, 2)
        self.points += math.floor(amount)
        self.recent_purchases = [p for p in self.recent_purchases if at - p.at < ROLLING_YEAR]
        self.recent_purchases.append(Purchase(at=at, amount=amount, category=category))
        if self.last_purchase_at is None or at > self.last_purchase_at:
            self.last_purchase_at = at
        if category:
            self.category_counts[category] = self.category_counts.get(category, 0) + 1

    def record_reaction(self, event_type: str) -> None:
        self.reactions[event_type] = self.reactions.get(event_type, 0) + 1

    def view(self, now: datetime) -> dict[str, Any]:
        """What conditions and templates see as `metrics`: every value as of `now`."""
        in_year = [p for p in self.recent_purchases if now - p.at < ROLLING_YEAR]
        points_valid = self.last_purchase_at is not None and now - self.last_purchase_at < POINTS_VALIDITY
        return {
            "orders": self.orders,
            "total_spent": self.total_spent,
            "orders_365d": len(in_year),
            "spent_365d": round(sum(p.amount for p in in_year), 2),
            "last_purchase_at": self.last_purchase_at.isoformat() if self.last_purchase_at else None,
            "points": self.points if points_valid else 0,
            "points_expire_at": (self.last_purchase_at + POINTS_VALIDITY).isoformat()
            if self.last_purchase_at
            else None,
            "days_since_last_purchase": (now - self.last_purchase_at).days if self.last_purchase_at else None,
            "average_order_value": round(self.total_spent / self.orders, 2) if self.orders else 0.0,
            "favourite_categories": [c for c, _ in Counter(self.category_counts).most_common(FAVOURITES)],
            "last_category": self.recent_purchases[-1].category if self.recent_purchases else None,
            "emails_opened": self.reactions.get(EventType.EMAIL_OPENED, 0),
            "emails_clicked": self.reactions.get(EventType.EMAIL_CLICKED, 0),
        }


METRIC_NAMES = frozenset(Metrics().view(datetime(2000, 1, 1)))
