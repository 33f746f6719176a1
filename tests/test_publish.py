"""`cyklo publish`, `versions`, `diff`, `rollback`, and who publishes: the commands on a
SQLite database, as a marketer runs them from a folder of journey files."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from api.app import create_app
from cli.main import app
from publishing import publish_journeys, watch
from settings import Settings, get_settings
from storage import journey_versions
from storage.database import migrate, session_for
from tests.conftest import JOURNEYS


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working folder holding a copy of the shipped journeys, its database named by the
    environment, and no Temporal to ask (port 9 refuses)."""
    shutil.copytree(JOURNEYS, tmp_path / "journeys")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CYKLO_DATABASE_URL", f"sqlite:///{tmp_path}/cyklo.db")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def cyklo(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_publish_freezes_each_changed_journey_and_says_what_changed(shop: Path) -> None:
    first = cyklo("publish")
    assert first.exit_code == 0, first.output
    assert "abandoned_cart: v1\n  new journey: stages cart, bought\n" in first.stdout
    assert "lifecycle: v1\n  new journey: stages prospect, new, active, vip, inactive\n" in first.stdout

    assert cyklo("publish", "journeys").stdout == "abandoned_cart: v1, unchanged\nlifecycle: v1, unchanged\n"

    edit(shop / "journeys/lifecycle.yaml", "      - wait: 3d\n", "      - wait: 5d\n")
    edit(shop / "journeys/templates/en/email/welcome.txt", "{{", "Hi! {{")
    second = cyklo("publish", "journeys/lifecycle.yaml")

    assert second.exit_code == 0, second.output
    assert second.stdout == (
        "lifecycle: v2 (was v1)\n"
        "  stage prospect step 2 changed: wait 3d → wait 5d\n"
        "  template welcome (email, en) changed\n"
    )


def test_stages_and_steps_added_and_removed_are_named(shop: Path) -> None:
    assert cyklo("publish").exit_code == 0
    lifecycle = shop / "journeys/lifecycle.yaml"
    edit(lifecycle, "      - wait: 3d\n", "      - wait: 3d\n      - wait: 1d\n")
    edit(lifecycle, "stages:\n", "stages:\n  waiting_room:\n    flow: []\n")
    edit(lifecycle, "  - {on: signed_up", "  - {on: cart_abandoned, to: waiting_room}\n  - {on: signed_up")

    result = cyklo("publish", "journeys/lifecycle.yaml")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "lifecycle: v2 (was v1)",
        "  changed: entry",
        "  stage waiting_room added",
        "  stage prospect step 3 added: wait 1d",
    ]
    assert lines[-1] == "an API already running routes events by the entry rules it read at start: restart it"


def test_a_journey_with_a_problem_publishes_nothing(shop: Path) -> None:
    edit(shop / "journeys/templates/pl/sms/thank_you.txt", "{{ customer.first_name }}", "{{ customer.frist_name }}")

    result = cyklo("publish")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "journeys/templates/pl/sms/thank_you.txt:1: customer has no field 'frist_name'; did you mean 'first_name'?\n"
    )
    assert cyklo("versions", "abandoned_cart").stderr == (
        "cyklo: journey 'abandoned_cart' is not published: run `cyklo publish`\n"
    )


def test_a_version_that_loses_a_stage_is_refused_until_the_file_says_where_its_customers_go(shop: Path) -> None:
    from tests.test_live_versions import rename_new_stage

    assert cyklo("publish").exit_code == 0
    lifecycle = shop / "journeys/lifecycle.yaml"
    rename_new_stage(lifecycle, say_so=False)
    line = lifecycle.read_text().splitlines().index("stages:") + 1

    refused = cyklo("publish")

    assert refused.exit_code == 1
    assert refused.stderr == (
        f"journeys/lifecycle.yaml:{line}: stage 'new' of version 1 is gone and customers may be in it: say where "
        "they go with `renamed_stages: {new: NEW_NAME}` or `removed_stages: {new: STAGE}` (or `{new: exit}`)\n"
    )
    assert cyklo("publish", "--plan").exit_code == 1, "the plan refuses what publishing would"
    edit(lifecycle, "versioning: stage_boundary\n", "versioning: stage_boundary\nrenamed_stages: {new: frist_order}\n")
    typo = cyklo("publish")
    assert typo.exit_code == 1
    assert "renamed_stages: 'new' goes to unknown stage 'frist_order' — did you mean 'first_order'?" in typo.stderr
    edit(lifecycle, "{new: frist_order}", "{new: first_order}")

    accepted = cyklo("publish")

    assert accepted.exit_code == 0, accepted.output
    assert "lifecycle: v2 (was v1)" in accepted.stdout


def test_the_plan_says_what_would_change_and_publishes_nothing(shop: Path) -> None:
    assert cyklo("publish").exit_code == 0
    edit(shop / "journeys/lifecycle.yaml", "      - wait: 3d\n", "      - wait: 5d\n")

    planned = cyklo("publish", "--plan")

    assert planned.exit_code == 0, planned.output
    assert planned.stdout == (
        "abandoned_cart: unchanged (v1): nothing happens to its customers\n"
        "lifecycle: would publish v2 (newest now v1)\n"
        "  stage prospect step 2 changed: wait 3d → wait 5d\n"
        "  customers running: unknown (Temporal at 127.0.0.1:9: no connection)\n"
    )
    assert cyklo("versions", "lifecycle").stdout.splitlines()[-2].split()[0] == "1", "still one version"


def test_versions_diff_and_rollback(shop: Path) -> None:
    assert cyklo("publish").exit_code == 0
    lifecycle = shop / "journeys/lifecycle.yaml"
    edit(lifecycle, "      - wait: 3d\n", "      - wait: 5d\n")
    assert cyklo("publish").exit_code == 0

    rolled = cyklo("rollback", "lifecycle", "1")
    assert rolled.exit_code == 0, rolled.output
    assert rolled.stdout == (
        "lifecycle: v3 (was v2) has the content of v1\n  stage prospect step 2 changed: wait 5d → wait 3d\n"
    )
    assert cyklo("rollback", "lifecycle", "3").stdout == (
        "lifecycle: v3 already has the content of v3, unchanged\n"
    )

    listed = cyklo("versions", "lifecycle")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["version", "published", "(UTC)", "hash", "git", "commit", "customers"]
    assert [line.split()[5] for line in lines[1:4]] == ["?", "?", "?"], "no Temporal to count them"
    rows = [line.split() for line in lines[1:4]]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert rows[0][3] == rows[2][3] != rows[1][3], "v3 has v1's content hash"
    assert lines[3].endswith("content of v1, newest")
    assert lines[4] == "customers running: unknown (Temporal at 127.0.0.1:9: no connection)"

    assert cyklo("diff", "lifecycle", "1", "2").stdout == "stage prospect step 2 changed: wait 3d → wait 5d\n"
    assert cyklo("diff", "lifecycle", "1", "3").stdout == "lifecycle: v1 and v3 have the same content\n"
    missing = cyklo("diff", "lifecycle", "1", "7")
    assert missing.exit_code == 1
    assert missing.stderr == (
        "cyklo: version 7 of journey 'lifecycle' is not published: `cyklo versions lifecycle` lists those that are\n"
    )
    # The files still say 5d: publishing them after the rollback is a new version again.
    assert cyklo("publish").stdout.endswith("lifecycle: v4 (was v3)\n  stage prospect step 2 changed: wait 3d → wait 5d\n")


def test_versions_record_the_git_commit_of_the_files(shop: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("no git on this machine")
    import subprocess

    run: Any = lambda *args: subprocess.run([git, *args], cwd=shop, check=True, capture_output=True, text=True)  # noqa: E731
    run("init", "-q")
    run("add", "journeys")
    run("-c", "user.email=m@example.com", "-c", "user.name=m", "commit", "-qm", "journeys")
    commit = run("rev-parse", "HEAD").stdout.strip()
    assert cyklo("publish").exit_code == 0

    row = cyklo("versions", "lifecycle").stdout.splitlines()[1].split()

    assert row[4] == commit[:12]


def _settings(shop: Path, publish_on_start: bool) -> Settings:
    return Settings(
        database_url=f"sqlite:///{shop}/cyklo.db",
        journeys_dir=shop / "journeys",
        publish_on_start=publish_on_start,
        allow_unencrypted_payloads=True,
    )


@pytest.mark.parametrize("publish_on_start", [False, True])
def test_the_api_publishes_at_start_only_when_told(shop: Path, publish_on_start: bool) -> None:
    settings = _settings(shop, publish_on_start)
    client: Any = object()  # the API only keeps it: no Temporal call is made at start

    with TestClient(create_app(settings, client=client)):
        pass

    migrate(settings.database_url)
    with session_for(settings.database_url) as session:
        assert journey_versions.published_ids(session) == (
            ["abandoned_cart", "lifecycle"] if publish_on_start else []
        )


def test_dev_publishes_again_when_a_template_changes_and_shows_problems(shop: Path) -> None:
    settings = _settings(shop, False)
    publish_journeys(settings, [settings.journeys_dir])
    said: list[str] = []
    published: list[None] = []

    async def scenario() -> None:
        watching = asyncio.ensure_future(
            watch(settings, settings.journeys_dir, said.append, lambda: published.append(None), interval=0.05)
        )
        try:
            await asyncio.sleep(0.2)
            edit(shop / "journeys/templates/pl/sms/thank_you.txt", "{{", "Dzięki! {{")
            await _until(lambda: len(said) == 1)
            edit(shop / "journeys/lifecycle.yaml", "      - wait: 3d\n", "      - wait: soon\n")
            await _until(lambda: len(said) == 2)
        finally:
            watching.cancel()

    asyncio.run(scenario())

    assert said[0] == "abandoned_cart: v1, unchanged\nlifecycle: v2 (was v1)\n  template thank_you (sms, pl) changed"
    assert said[1].startswith("journeys not published, fix these first:\n  ")
    assert "lifecycle.yaml" in said[1] and "bad duration 'soon'" in said[1]
    assert len(published) == 2


async def _until(condition: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)
