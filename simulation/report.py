"""The simulated timeline for people (a table) and for programs (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reports.funnel import JourneyFunnel
from reports.funnel import as_text as funnel_text
from simulation.runner import TimelineEntry

STATUS_MARK = {"sent": "✓", "suppressed": "∅", "capped": "⊘", "held_out": "○", "failed": "✗"}


def as_json(timeline: list[TimelineEntry]) -> str:
    return json.dumps([entry.model_dump(mode="json") for entry in timeline], indent=2, ensure_ascii=False)


def as_text(timeline: list[TimelineEntry], funnels: Sequence[JourneyFunnel] = ()) -> str:
    """The timeline, then the scenario's funnel per journey (when given)."""
    lines = []
    for entry in timeline:
        when = entry.at.strftime("%Y-%m-%d %H:%M %Z")
        if entry.kind == "event":
            lines.append(f"{when}  event    {entry.detail}")
        elif entry.kind == "publish":
            lines.append(f"{when}  publish  {entry.detail}")
        elif entry.kind == "conversion":
            lines.append(f"{when}  {entry.journey:<15} converted: {entry.template} {entry.detail}")
        elif entry.kind == "stage":
            lines.append(f"{when}  {entry.journey:<15} → stage {entry.stage}  ({entry.detail})")
        else:
            mark = STATUS_MARK.get(entry.status or "", "?")
            why = f"  — {entry.detail}" if entry.detail else ""
            lines.append(
                f"{when}  {entry.journey:<15} {mark} {entry.channel:<5} {entry.template:<22} {entry.status}{why}"
            )
    sent = sum(1 for entry in timeline if entry.kind == "message" and entry.status == "sent")
    messages = sum(1 for entry in timeline if entry.kind == "message")
    lines.append(f"{messages} messages, {sent} sent")
    for funnel in funnels:
        lines.extend(["", funnel_text(funnel)])
    return "\n".join(lines)
