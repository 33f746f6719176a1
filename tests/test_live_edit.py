"""A journey changed while customers are in it: a live edit reaches them at their next stage
entry, on the real workflow and activities (time-skipping server, database, emulator)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlmodel import col, select

from emulator.server import ProviderEmulator
from simulation.report import as_json, as_text
from simulation.runner import SimulationResult
from storage.database import session_for
from storage.models import StageEntry
from tests.conftest import JOURNEYS, make_scenario, run
from tests.test_lifecycle_journey import SIGNED_UP, purchase

NEW_SUBJECT = "Witaj w gronie stałych klientów (wersja 2)"


def edited_journeys(folder: Path) -> Path:
    """journeys/ as a marketer edits it: recommendations every 14 days instead of 30, and a
    new subject for loyalty_welcome."""
    shutil.copytree(JOURNEYS, folder, ignore=shutil.ignore_patterns("tests"))
    lifecycle = folder / "lifecycle.yaml"
    text = lifecycle.read_text()
    assert "            - wait: 30d\n" in text
    lifecycle.write_text(text.replace("            - wait: 30d\n", "            - wait: 14d\n"))
    (folder / "templates" / "pl" / "email" / "loyalty_welcome.subject.txt").write_text(NEW_SUBJECT + "\n")
    return folder


def sent(result: SimulationResult) -> list[tuple[str, str, int | None]]:
    return [
        (entry.at.strftime("%Y-%m-%d %H:%M"), entry.template or "", entry.version)
        for entry in result.timeline
        if entry.kind == "message" and entry.status == "sent" and entry.journey == "lifecycle"
    ]


async def test_a_customer_in_flight_adopts_the_edit_at_their_next_stage_entry(tmp_path: Path) -> None:
    edit = edited_journeys(tmp_path / "v2")
    scenario = make_scenario(
        SIGNED_UP,
        purchase("1d", "e-1"),
        {"at": "25d", "publish": str(edit)},
        purchase("30d2h", "e-2"),
        until="75d",
    )

    database_url = f"sqlite:///{tmp_path}/cyklo.db"
    with ProviderEmulator() as emulator:
        result = await run(scenario, emulator=emulator, database_url=database_url)
        subjects = {message.subject for message in emulator.messages("email")}

    published = [entry for entry in result.timeline if entry.kind == "publish" and entry.journey == "lifecycle"]
    assert [(entry.detail, entry.version) for entry in published] == [("lifecycle version 2 published", 2)]
    # Before the publish, and in the stage they were in when it came, version 1; from the
    # next stage entry (the second order, 12:00 CET on 1 April: 13:00 summer time) version 2,
    # with 14 days to each recommendation instead of 30.
    assert sent(result) == [
        ("2026-03-02 10:00", "welcome", 1),
        ("2026-03-03 10:00", "thank_you", 1),
        ("2026-03-03 10:00", "thank_you", 1),
        ("2026-03-05 10:00", "cross_sell", 1),
        ("2026-03-12 10:00", "review_request", 1),
        ("2026-04-01 13:00", "loyalty_welcome", 2),
        ("2026-04-15 13:00", "recommendations", 2),
        ("2026-04-29 13:00", "recommendations", 2),
        ("2026-05-13 13:00", "recommendations", 2),
    ]
    assert NEW_SUBJECT in subjects, "the message renders from the version the customer runs"
    text = as_text(result.timeline).splitlines()
    assert "2026-03-27 10:00 CET  publish  lifecycle version 2 published" in text
    assert (
        "2026-04-01 13:00 CEST  lifecycle       → stage active  (from new on purchase (e-2); adopts version 2)" in text
    )
    assert {entry["version"] for entry in json.loads(as_json(result.timeline)) if entry["kind"] == "message"} == {1, 2}
    view = result.journeys["lifecycle"]
    assert view.version == 2
    active = view.stage_history[-1]
    assert (active.stage, active.version, active.adopted_from) == ("active", 2, 1)
    # What the customer had is kept: both orders count, the earlier messages are still theirs.
    assert view.metrics["orders"] == 2
    with session_for(database_url) as session:
        entries = session.exec(select(StageEntry).order_by(col(StageEntry.entry))).all()
    # Each stage entry recorded by the journey, with the version it happened on (stage flows
    # and churn are counted from these).
    assert [(row.entry, row.stage, row.previous_stage, row.journey_version) for row in entries] == [
        (1, "prospect", None, 1),
        (2, "new", "prospect", 1),
        (3, "active", "new", 1),
    ]
    assert [message.template for message in view.messages][:2] == ["welcome", "thank_you"]


async def test_a_pinned_journey_keeps_its_customers_on_their_version(tmp_path: Path) -> None:
    edit = edited_journeys(tmp_path / "v2")
    lifecycle = edit / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("versioning: stage_boundary", "versioning: pin"))
    scenario = make_scenario(
        SIGNED_UP, purchase("1d", "e-1"), {"at": "25d", "publish": str(edit)}, purchase("30d2h", "e-2"), until="62d"
    )

    result = await run(scenario)

    assert [(template, version) for _, template, version in sent(result)][-2:] == [
        ("loyalty_welcome", 1),
        ("recommendations", 1),
    ]
    assert sent(result)[-1][0] == "2026-05-01 13:00"
    assert result.journeys["lifecycle"].version == 1
