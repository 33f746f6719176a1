"""Durations as marketers write them: `3d`, `1d2h`, `90m`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_DURATION = timedelta(days=36_500)
"""A hundred years: any longer and a timer's end no longer fits a date."""
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """Parse `1d2h`-style text; raise ValueError with a hint a marketer can act on."""
    cleaned = text.strip().replace(" ", "")
    match = _DURATION.match(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise ValueError(
            f"bad duration {text!r}: use a number with a unit w, d, h, m or s, e.g. 3d, 1d2h, 90m"
        )
    if len(cleaned) > 40:
        raise ValueError(f"bad duration {cleaned[:20]!r}...: too long to be a duration")
    seconds = sum(
        int(value) * unit for value, unit in zip(match.groups(), _UNITS.values(), strict=True) if value
    )
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is too long: at most {MAX_DURATION.days:,}d (a hundred years)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        if unit == "w":
            continue
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: add a unit, e.g. {value}d or {value}h")
    return value


# Serialised back to the marketer's notation so a definition round-trips through
# workflow history and the journey_versions table unchanged.
Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
]
