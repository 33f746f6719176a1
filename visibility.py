"""How many customers run each version and stage of a journey, from Temporal visibility
(the JourneyId, JourneyVersion and JourneyStage search attributes the workflow keeps)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio.client import Client

from api.support import visibility_literal
from definition.model import Journey
from settings import Settings

TIMEOUT_SECONDS = 5.0
"""How long a command waits for Temporal before it says the counts are unknown."""


@dataclass(frozen=True)
class Census:
    running: int
    """Every running customer of the journey."""
    by_version_and_stage: dict[tuple[int, str], int]
    """Running customers per (version, stage), zeros left out."""

    @property
    def unplaced(self) -> int:
        """Running but in none of the counts: started before workflows recorded their version,
        or not in a stage yet."""
        return self.running - sum(self.by_version_and_stage.values())

    def on_version(self, version: int) -> int:
        return sum(count for (counted, _), count in self.by_version_and_stage.items() if counted == version)


async def census(client: Client, journey_id: str, versions: dict[int, Journey]) -> Census:
    """Count by every stage of every published version (visibility counts one filter at a time)."""
    running = f"JourneyId = '{visibility_literal(journey_id)}' AND ExecutionStatus = 'Running'"
    total = (await client.count_workflows(running)).count
    counts: dict[tuple[int, str], int] = {}
    if total:
        for version, definition in sorted(versions.items()):
            for stage in definition.stages:
                query = f"{running} AND JourneyVersion = {version} AND JourneyStage = '{visibility_literal(stage)}'"
                found = (await client.count_workflows(query)).count
                if found:
                    counts[(version, stage)] = found
    return Census(total, counts)


async def census_or_reason(settings: Settings, journey_id: str, versions: dict[int, Journey]) -> Census | str:
    """The census, or why there is none (Temporal down or slow): commands print the reason and go on."""
    from connection import connect

    try:
        client = await asyncio.wait_for(connect(settings, payloads=False), TIMEOUT_SECONDS)
        return await asyncio.wait_for(census(client, journey_id, versions), TIMEOUT_SECONDS * 4)
    except (TimeoutError, OSError) as problem:
        return f"Temporal at {settings.temporal_address} did not answer: {problem or 'timed out'}"
    except Exception as problem:  # noqa: BLE001 - the rest of the command is worth printing without counts
        # temporalio says a refused connection with a RuntimeError and the transport's dump.
        reason = "no connection" if "Failed client connect" in str(problem) else str(problem)
        return f"Temporal at {settings.temporal_address}: {reason}"
