"""Recorded histories of the default journeys replay against the current workflow code.

A change that alters the commands a workflow issues must be guarded with
workflow.patched(); this test is what tells.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.interface import JourneyInput, JourneyResult, SupportKind
from workflows.journey import JourneyWorkflow, workflow_runner

# This module defines a workflow, so the sandbox imports it again: the codec and its native
# cryptography library are passed through rather than re-imported there.
with workflow.unsafe.imports_passed_through():
    from connection import data_converter
    from payload_encryption import new_payload_key
    from settings import Settings

HERE = Path(__file__).parent / "histories"
HISTORIES = sorted(HERE.glob("*.json"))
# The recorded histories predate payload encryption: they must replay through the
# encrypting converter, whose codec passes unencrypted payloads through.
CONVERTER = data_converter(Settings(payload_keys=new_payload_key("replay")))


def test_recorded_histories_exist() -> None:
    assert len(HISTORIES) >= 3, (
        "tests/histories/ must hold recorded journeys (python -m tests.histories.record)"
    )


def test_a_recorded_chain_covers_every_support_action_and_continue_as_new() -> None:
    events = [
        event
        for path in HISTORIES
        if path.stem.startswith("support_actions")
        for event in json.loads(path.read_text())["events"]
    ]
    updates = {
        event["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequest"]["input"]["name"]
        for event in events
        if event["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"
    }
    kinds = {event["eventType"] for event in events}

    assert updates == set(SupportKind), "python -m tests.histories.record support_actions"
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW" in kinds


def _prepare_answers(path: Path) -> list[dict[str, Any]]:
    """Every local activity answer in a recorded history (prepare_journey's, in these)."""
    found = []
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes", {})
        if marker.get("markerName") == "core_local_activity":
            found.append(json.loads(base64.b64decode(marker["details"]["result"]["payloads"][0]["data"])))
    return found


def _prepared_versions(path: Path) -> list[tuple[int, bool]]:
    """(version, with a definition) of every prepare_journey answer in a recorded history."""
    return [
        (answer["version"], bool(answer["definition_json"] or answer.get("definition_deflated")))
        for answer in _prepare_answers(path)
    ]


def test_a_recorded_history_covers_a_customer_adopting_a_newer_version() -> None:
    """live_edit: the customer starts on version 1, asks at the entries into prospect and
    new and hears of nothing newer, then asks again after a publish and adopts version 2."""
    assert _prepared_versions(HERE / "live_edit_0.json") == [(1, True), (1, False), (1, False), (2, True)]


def test_a_recorded_history_covers_an_imported_customer_seeded_from_their_orders() -> None:
    """imported: `cyklo import start` enters a customer with two imported orders, whose first
    prepare_journey answer carries those orders as the starting metrics."""
    seeds = [
        answer["seed"]["metrics"]["orders"]
        for answer in _prepare_answers(HERE / "imported_0.json")
        if answer.get("seed") is not None
    ]
    assert seeds == [2]


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_recorded_history_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    replayer = Replayer(
        workflows=[JourneyWorkflow], data_converter=CONVERTER, workflow_runner=workflow_runner()
    )

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="Journey")
class JourneyWithoutStageAttributes(JourneyWorkflow):
    """The real workflow with one small unguarded change: it stops upserting the stage."""

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyResult:
        return await super().run(input)

    def _publish_stage(self, stage: str) -> None:
        pass


async def test_a_small_unguarded_change_is_caught_by_the_replay_check() -> None:
    path = next(path for path in HISTORIES if path.stem.startswith("lifecycle_year"))
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    replayer = Replayer(
        workflows=[JourneyWithoutStageAttributes],
        data_converter=CONVERTER,
        workflow_runner=workflow_runner(),
    )

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure
