"""Shop webhook bodies as the platforms document them (README.md here says where each comes from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def documented(name: str, **changes: Any) -> dict[str, Any]:
    """The documented payload `name` (e.g. "shopify/order"), with only the given fields changed."""
    payload: dict[str, Any] = json.loads((HERE / f"{name}.json").read_text())
    payload.update(changes)
    return payload
