"""The journey workflow as older code ran it, for recovery, hand-over and replay tests. A
module of its own: the sandbox re-imports a workflow's module, so it imports only the
workflow."""

from __future__ import annotations

from temporalio import workflow

# Passed through as workflows/journey.py passes them: a copy of the interface re-imported in
# the sandbox would be another class than the one the journey machine builds its requests of.
with workflow.unsafe.imports_passed_through():
    from workflows.interface import JourneyEvent, JourneyInput, JourneyResult
    from workflows.machine import ADOPT_AT_STAGE_ENTRY
from workflows.journey import PATCH_GENERATIONS, SENDS_AS_LOCAL_ACTIVITIES, JourneyWorkflow

SINCE_GENERATION_2 = PATCH_GENERATIONS[2][1] - PATCH_GENERATIONS[1][1]


class OlderCode(JourneyWorkflow):
    """Code from before patch generation 3: it never asked that generation's patches, so its
    histories hold no answer to them (asking would write one)."""

    def _patched(self, patch_id: str) -> bool:
        return patch_id not in SINCE_GENERATION_2 and super()._patched(patch_id)


class AsksEachPatch(OlderCode):
    """Code from before EVERY_PATCH_FROM_THE_START asked each patch where it stands."""

    def _began_with_patches(self) -> frozenset[str]:
        return frozenset()


@workflow.defn(name="Journey")
class JourneyBeforeTheFix(AsksEachPatch):
    """Uses whatever an event carries: a category of 7 fails the workflow task, a missing
    amount counts as 0."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        return await super().run(input)

    def _invalid_properties(self, event: JourneyEvent) -> list[str]:
        return []


@workflow.defn(name="Journey")
class JourneyBeforeAdoption(AsksEachPatch):
    """Never asks for a newer version at a stage entry: what the histories of customers who
    were in a journey before adoption existed hold."""

    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        super().__init__(input)
        asks = self.machine.patched
        self.machine.patched = lambda patch_id: not patch_id.startswith(ADOPT_AT_STAGE_ENTRY) and asks(patch_id)

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        return await super().run(input)


@workflow.defn(name="Journey")
class JourneyBeforeLocalSends(OlderCode):
    """The code of the first patch generation: every send an activity task of its own."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        return await super().run(input)

    def _began_with_patches(self) -> frozenset[str]:
        marker, patches = PATCH_GENERATIONS[0]
        return patches if workflow.patched(marker) else frozenset()

    def _patched(self, patch_id: str) -> bool:
        return patch_id != SENDS_AS_LOCAL_ACTIVITIES and super()._patched(patch_id)


@workflow.defn(name="Journey")
class JourneyBeforeEveryEntryWithItsSend(OlderCode):
    """The code of the second patch generation: a stage entry after the enrolment's first is
    recorded by prepare_journey, in a write transaction of its own."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        return await super().run(input)

    def _began_with_patches(self) -> frozenset[str]:
        for marker, patches in reversed(PATCH_GENERATIONS[:2]):
            if workflow.patched(marker):
                return patches
        return frozenset()
