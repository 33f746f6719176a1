"""Local-time arithmetic for quiet hours and `wait: {until: ...}`, correct across DST.

Pure functions of their arguments, so the workflow can use them deterministically.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from definition.model import QuietHours

FALLBACK_TIMEZONE = "Europe/Warsaw"


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or FALLBACK_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(FALLBACK_TIMEZONE)


def _at(day: date, moment: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, moment, tzinfo=tz)


def quiet_until(now: datetime, timezone: str | None, quiet: QuietHours | None) -> datetime | None:
    """When the quiet window containing `now` ends, or None if `now` is outside it."""
    if quiet is None or quiet.start == quiet.end:
        return None
    tz = zone(timezone)
    local = now.astimezone(tz)
    today = local.date()
    if quiet.start > quiet.end:  # the window spans midnight, e.g. 21:00-09:00
        if local.time() >= quiet.start:
            return _at(today + timedelta(days=1), quiet.end, tz)
        if local.time() < quiet.end:
            return _at(today, quiet.end, tz)
        return None
    if quiet.start <= local.time() < quiet.end:
        return _at(today, quiet.end, tz)
    return None


def next_local_time(after: datetime, timezone: str | None, moment: time) -> datetime:
    """The first instant at or after `after` whose local time of day is `moment`."""
    tz = zone(timezone)
    local = after.astimezone(tz)
    candidate = _at(local.date(), moment, tz)
    if candidate < after:
        candidate = _at(local.date() + timedelta(days=1), moment, tz)
    return candidate


def advance(moment: datetime, duration: timedelta, timezone: str | None) -> datetime:
    """`moment` plus `duration`, whole days counted on the customer's calendar.

    "Wait 30 days" means the same local time 30 days later, also across a DST change;
    the hours and minutes of a duration are elapsed time.
    """
    days = timedelta(days=duration.days)
    local = moment.astimezone(zone(timezone))
    # Aware datetime + timedelta is wall-clock arithmetic in Python: the offset is
    # recomputed for the new local time, which is what calendar days need.
    return (local + days).astimezone(moment.tzinfo) + (duration - days)


def daytime_zone(now: datetime) -> str:
    """A time zone where it is between 10:00 and 18:00 at `now`, nearest to UTC.

    Marketing waits for the end of quiet hours in the customer's zone: customers of a
    benchmark or a real-time test get this zone, so a run at night still sees sends, not timers."""
    for hours in sorted(range(-12, 15), key=abs):
        if 10 <= (now + timedelta(hours=hours)).hour < 18:
            # IANA's Etc zones count the other way round: Etc/GMT-2 is UTC+2.
            return "Etc/UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"
    raise AssertionError("some offset between -12 and +14 hours is always daytime")
