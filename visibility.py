"""How many customers run each version and stage of a journey, from Temporal visibility
(the JourneyId, JourneyVersion and JourneyStage search attributes the workflow keeps)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio.client import Client

from api.support import visibility_literal
from definition.model import Journey
from reports.lifecycle import StagesNow
from settings import Settings

TIMEOUT_SECONDS = 5.0
"""How long a command waits for Temporal before it says the counts are unknown."""


@dataclass(frozen=True)
class Census:
    running: int
    """Every running customer of the journey."""
    by_version_and_stage: dict[tuple[int, str], int]
    """Running customers per (version, stage), zeros left out."""
    stages: dict[str, int]
    """Running customers per stage, whatever their version — also those whose runs began
    before workflows recorded their version (zeros left out)."""

    @property
    def unplaced(self) -> int:
        """Running but in none of the counts: started before workflows recorded their version,
        or not in a stage yet."""
        return max(0, self.running - sum(self.by_version_and_stage.values()))

    def by_stage(self) -> dict[str, int]:
        return dict(sorted(self.stages.items()))

    def on_version(self, version: int) -> int:
        return sum(count for (counted, _), count in self.by_version_and_stage.items() if counted == version)


async def census(client: Client, journey_id: str, versions: dict[int, Journey]) -> Census:
    """Count by every stage of every published version (visibility counts one filter at a time)."""
    running = f"JourneyId = '{visibility_literal(journey_id)}' AND ExecutionStatus = 'Running'"
    total = (await client.count_workflows(running)).count
    counts: dict[tuple[int, str], int] = {}
    stages: dict[str, int] = {}
    if total:
        for version, definition in sorted(versions.items()):
            for stage in definition.stages:
                query = f"{running} AND JourneyVersion = {version} AND JourneyStage = '{visibility_literal(stage)}'"
                found = (await client.count_workflows(query)).count
                if found:
                    counts[(version, stage)] = found
        for stage in sorted({stage for definition in versions.values() for stage in definition.stages}):
            found = (await client.count_workflows(f"{running} AND JourneyStage = '{visibility_literal(stage)}'")).count
            if found:
                stages[stage] = found
    return Census(total, counts, stages)


async def census_or_reason(settings: Settings, journey_id: str, versions: dict[int, Journey]) -> Census | str:
    """The census, or why there is none (Temporal down or slow): commands print the reason and go on."""
    found = await censuses_or_reason(settings, {journey_id: versions})
    return found if isinstance(found, str) else found[journey_id]


async def censuses_or_reason(
    settings: Settings, journeys: dict[str, dict[int, Journey]], client: Client | None = None
) -> dict[str, Census] | str:
    """The census of each journey (id → its published versions), or why there is none; on
    `client` when the caller has one (the API), else on a connection of its own."""
    from connection import connect

    try:
        if client is None:
            client = await asyncio.wait_for(connect(settings, payloads=False), TIMEOUT_SECONDS)
        return {
            journey_id: await asyncio.wait_for(census(client, journey_id, versions), TIMEOUT_SECONDS * 4)
            for journey_id, versions in journeys.items()
        }
    except (TimeoutError, OSError) as problem:
        return f"Temporal at {settings.temporal_address} did not answer: {problem or 'timed out'}"
    except Exception as problem:  # noqa: BLE001 - the rest of the command is worth printing without counts
        # temporalio says a refused connection with a RuntimeError and the transport's dump.
        reason = "no connection" if "Failed client connect" in str(problem) else str(problem)
        return f"Temporal at {settings.temporal_address}: {reason}"


async def stage_census(
    settings: Settings, journeys: dict[str, dict[int, Journey]], client: Client | None = None
) -> list[StagesNow] | str:
    """Running customers per stage of every journey, for the lifecycle report, or why unknown."""
    if not journeys:
        return []  # nothing published, nothing running: no need to ask Temporal
    found = await censuses_or_reason(settings, journeys, client)
    if isinstance(found, str):
        return found
    return [
        StagesNow(
            journey_id=journey_id,
            running=counted.running,
            by_stage=counted.by_stage(),
            # Never below 0: the counts are separate queries, and visibility may lag one.
            unplaced=max(0, counted.running - sum(counted.stages.values())),
        )
        for journey_id, counted in sorted(found.items())
    ]
