"""`cyklo validate`: every kind of mistake a marketer makes, reported as `file:line: message`."""

from __future__ import annotations

import shutil
from datetime import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from definition.loader import load_journey
from tests.conftest import JOURNEYS

MINIMAL = """\
journey: promo
name: Promo
entry:
  - {on: signed_up, to: hello}
stages:
  hello:
    flow:
      - send: {channel: email, template: welcome}
      - wait: 2d
      - branch:
          if: "metrics.orders > 0"
          then:
            - exit
    transitions:
      - {on: purchase, to: bye}
  bye:
    flow: []
"""


@pytest.fixture
def journeys(tmp_path: Path) -> Path:
    """A folder with a valid journey and the shipped templates beside it."""
    shutil.copytree(JOURNEYS / "templates", tmp_path / "templates")
    (tmp_path / "promo.yaml").write_text(MINIMAL)
    return tmp_path


def problems_of(folder: Path, text: str) -> list[str]:
    path = folder / "promo.yaml"
    path.write_text(text)
    loaded, problems = load_journey(path)
    assert loaded is None, "a broken journey must not load"
    return [f"{problem.path.name}:{problem.line}: {problem.message}" for problem in problems]


def test_shipped_journeys_validate_cleanly() -> None:
    result = CliRunner().invoke(app, ["validate", str(JOURNEYS)])

    assert result.exit_code == 0, result.output
    assert "ok: 2 journeys (abandoned_cart, lifecycle)" in result.output


def test_minimal_journey_is_valid(journeys: Path) -> None:
    loaded, problems = load_journey(journeys / "promo.yaml")

    assert problems == [] and loaded is not None
    assert sorted(loaded.templates) == [
        f"{locale}/email/{name}"
        for locale in ("en", "pl")
        for name in ("_layout.html", "_layout.txt", "welcome.html", "welcome.subject.txt", "welcome.txt")
    ], "the templates used and the layouts they extend"


def test_yaml_syntax_error_names_the_line(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("  bye:\n", "  bye: [\n"))

    assert len(found) == 1 and found[0].startswith("promo.yaml:16: YAML syntax error")


def test_unknown_step_names_the_line_and_suggests(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("- wait: 2d", "- wiat: 2d"))

    assert found == [
        "promo.yaml:9: unknown step 'wiat' — did you mean 'wait'?: use one of send, wait, wait_for, branch, split, repeat, exit"
    ]


def test_unknown_field_names_the_line_and_suggests(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("template: welcome", "templat: welcome"))

    assert "promo.yaml:8: unknown field 'templat' — did you mean 'template'?" in found


def test_bad_duration_names_the_line(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("wait: 2d", "wait: 2 days"))

    assert len(found) == 1 and found[0].startswith("promo.yaml:9: ")
    assert "bad duration '2 days'" in found[0]


def test_unknown_stage_in_transition_names_the_line_and_suggests(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("to: bye}", "to: by}"))

    assert "promo.yaml:15: unknown stage 'by' in a transition of 'hello' — did you mean 'bye'?" in found
    assert (
        "promo.yaml:16: stage 'bye' is unreachable: no entry or transition of another stage leads to it"
        in found
    )


def test_missing_template_names_the_send_and_suggests(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("template: welcome", "template: welcom"))

    assert (
        found[0]
        == "promo.yaml:8: missing template pl/email/welcom.subject.txt for send 'welcom' — did you mean 'welcome'?"
    )


def test_missing_locale_is_reported(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("name: Promo", "name: Promo\nlocales: [pl, de]"))

    assert any(
        "de/email/welcome.subject.txt" in line and "locale 'de' has no folder" in line for line in found
    )


def test_template_syntax_error_names_the_template_file_and_line(journeys: Path) -> None:
    template = journeys / "templates" / "en" / "email" / "welcome.txt"
    template.write_text("Hello\n\n{% if customer.first_name %}\nno end\n")

    found = problems_of(journeys, MINIMAL)

    assert len(found) == 1 and found[0].startswith("welcome.txt:")
    assert "template syntax error" in found[0]


def test_variable_not_in_the_template_context_is_named_at_its_line(journeys: Path) -> None:
    template = journeys / "templates" / "pl" / "email" / "welcome.subject.txt"
    template.write_text("Witaj\n{{ customr.first_name }}\n")

    found = problems_of(journeys, MINIMAL)

    assert found == [
        "welcome.subject.txt:2: variable 'customr' is not available — did you mean 'customer'?; "
        "available: customer, discount_code, event, links, metrics, shop"
    ]


def test_condition_syntax_error_names_the_line(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("metrics.orders > 0", "metrics.orders >> 0"))

    assert len(found) == 1 and found[0].startswith(
        "promo.yaml:11: condition 'metrics.orders >> 0' is not valid"
    )


def test_unknown_metric_in_condition_is_named(journeys: Path) -> None:
    found = problems_of(journeys, MINIMAL.replace("metrics.orders > 0", "metrics.ordrs > 0"))

    assert found[0].startswith("promo.yaml:11: condition 'metrics.ordrs > 0' uses unknown metric 'ordrs'")


def test_several_problems_of_one_file_are_all_reported_through_the_cli(journeys: Path) -> None:
    (journeys / "promo.yaml").write_text(
        MINIMAL.replace("template: welcome", "template: welcom").replace(
            "metrics.orders > 0", "metrics.x > 0"
        )
    )

    result = CliRunner().invoke(app, ["validate", str(journeys / "promo.yaml")])

    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any(":8: missing template" in line for line in lines)
    assert any(":11: condition 'metrics.x > 0'" in line for line in lines)
    assert "Traceback" not in result.output


def test_garbage_file_gets_one_clear_line_no_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.yaml"
    garbage.write_bytes(b"\x00\xff\xfe binary \x00")

    result = CliRunner().invoke(app, ["validate", str(garbage)])

    assert result.exit_code == 1
    assert "broken.yaml" in result.output and "Traceback" not in result.output


def test_a_layout_that_does_not_exist_is_named(journeys: Path) -> None:
    template = journeys / "templates" / "en" / "email" / "welcome.html"
    template.write_text('{% extends "en/email/_frame.html" %}\n')

    found = problems_of(journeys, MINIMAL)

    assert found == [
        f"welcome.html:1: template 'en/email/_frame.html' not found under {journeys / 'templates'}"
    ]


def test_an_unquoted_time_of_day_means_that_time(journeys: Path) -> None:
    path = journeys / "promo.yaml"
    path.write_text(MINIMAL.replace("- wait: 2d", "- wait: {until: 10:30}"))

    loaded, problems = load_journey(path)

    assert problems == [] and loaded is not None
    step = loaded.definition.stages["hello"].flow[1]
    assert step.wait.until == time(10, 30)  # type: ignore[union-attr]
