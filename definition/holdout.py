"""The global control group: a sticky, hashed share of customers no journey markets to.

One function, used by the send activity (which records their marketing messages `held_out`)
and by the experiments report (which compares their revenue with everyone else's): both must
put the same customers in the control, and a customer stays there while the percent holds.
"""

from __future__ import annotations

import hashlib

_SALT = "cyklo:global-holdout"
"""Keeps the control group independent of every split's hash (which salts with journey and split)."""


def in_global_holdout(customer_id: str, percent: float) -> bool:
    """Whether the customer is in the control group of `percent` % (0: nobody)."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{_SALT}:{customer_id}".encode()).digest()
    # Basis points, so a percent like 2.5 is honoured exactly.
    return int.from_bytes(digest[:4], "big") % 10_000 < round(percent * 100)
