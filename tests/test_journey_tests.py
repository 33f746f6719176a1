"""`cyklo test`: the shop's CI runs the journey tests and stops on a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from definition.loader import load_journeys_or_raise
from tests.conftest import JOURNEYS, REPO

ALA = """\
customer:
  id: c-ala
  locale: pl
  timezone: Europe/Warsaw
  email: ala@example.com
  phone: "+48601234567"
  consents: {email: true, sms: false, source: signup form}
start: 2026-03-02T22:30:00+01:00
events:
  - {at: 0s, type: signed_up}
until: 4d
"""


def cyklo_test(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "test", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_failing_scenario_prints_what_happened_instead_and_fails_the_run(tmp_path: Path) -> None:
    passing = tmp_path / "welcome.yaml"
    passing.write_text(
        ALA + "expect:\n"
        "  messages:\n"
        '    - {template: welcome, channel: email, status: sent, at: "2026-03-03T09:00"}\n'
        "  not_sent: [first_order_last_call]\n"
        "  stages: [prospect]\n"
        "  final_stage: prospect\n"
        "  count: {first_order_nudge: 1}\n"
    )
    failing = tmp_path / "wrong.yaml"
    failing.write_text(
        ALA + "expect:\n"
        "  messages:\n"
        '    - {template: welcome, at: "2026-03-02T22:30"}\n'
        "  not_sent: [welcome]\n"
        "  stages: [prospect, new]\n"
        "  count: {first_order_nudge: 2}\n"
    )

    result = cyklo_test(str(passing), str(failing))

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ok   {passing} (lifecycle)")
    assert lines[1].startswith(f"FAIL {failing} (lifecycle)")
    assert [line.strip() for line in lines[2:6]] == [
        "message welcome (at 2026-03-02T22:30): not found; saw welcome email sent at 2026-03-03T09:00",
        "not_sent welcome: email sent at 2026-03-03T09:00",
        "count first_order_nudge: expected 2, sent 1 (email sent at 2026-03-06T09:00)",
        "stages: expected new after prospect; saw prospect",
    ]
    assert lines[-1] == "2 scenarios: 1 passed, 1 failed"


def test_a_misnamed_template_stops_the_run_before_any_scenario_runs(tmp_path: Path) -> None:
    (tmp_path / "typo.yaml").write_text(ALA + "expect:\n  not_sent: [first_order_lastcall]\n")
    (tmp_path / "unknown_key.yaml").write_text(ALA + "expect:\n  final: prospect\n")

    result = cyklo_test(str(tmp_path))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'typo.yaml'}:13: expect.not_sent.0: no journey sends 'first_order_lastcall'"
        " — did you mean 'first_order_last_call'?",
        f"{tmp_path / 'unknown_key.yaml'}:13: expect.final: Extra inputs are not permitted",
    ]


def test_the_journey_tests_folder_is_not_read_as_journeys() -> None:
    assert (JOURNEYS / "tests").is_dir(), "the shipped journey tests live beside the journeys"

    loaded = load_journeys_or_raise([JOURNEYS])

    assert sorted(journey.path.name for journey in loaded) == ["abandoned_cart.yaml", "lifecycle.yaml"]
