"""`cyklo simulate`: the marketer's window, and clear errors for bad scenarios and events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from routing.events import IncomingEvent
from simulation.scenario import ScenarioError, load_scenario
from tests.conftest import REPO


def cyklo(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *arguments], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_simulate_json_lists_stages_and_messages_in_the_customers_time() -> None:
    result = cyklo("simulate", "--scenario", "scenarios/sample.yaml", "--json")

    assert result.returncode == 0, result.stderr
    timeline = json.loads(result.stdout)
    first_stage = next(item for item in timeline if item["kind"] == "stage")
    welcome = next(item for item in timeline if item["kind"] == "message")
    assert first_stage == {**first_stage, "journey": "lifecycle", "stage": "prospect"}
    assert first_stage["at"].startswith("2026-03-02T22:30") and first_stage["at"].endswith("+01:00")
    assert {key: welcome[key] for key in ("journey", "channel", "template", "status", "stage")} == {
        "journey": "lifecycle",
        "channel": "email",
        "template": "welcome",
        "status": "sent",
        "stage": "prospect",
    }
    assert welcome["at"].startswith("2026-03-03T09:00")
    assert any(item["kind"] == "message" and item["journey"] == "abandoned_cart" for item in timeline)


def test_simulate_prints_a_readable_timeline() -> None:
    result = cyklo("simulate", "journeys/lifecycle.yaml", "--scenario", "scenarios/sample.yaml")

    assert result.returncode == 0, result.stderr
    assert "→ stage prospect" in result.stdout
    assert "✓ email welcome" in result.stdout
    assert "cart_reminder" not in result.stdout, "only the journey asked for is simulated"
    # The first order came within welcome's 3 days: credited to it, and the funnel says so.
    assert "lifecycle       converted: welcome +250.00 PLN" in result.stdout
    funnel = result.stdout.split("journey lifecycle (all time", 1)[1]
    welcome = next(line for line in funnel.splitlines() if line.startswith("prospect email welcome"))
    assert welcome.split()[3:10] == ["1", "0", "0", "0", "0", "1", "100.0%"]


def test_bad_scenario_names_file_line_and_field_without_traceback(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(
        "customer: {id: c-1, locale: de, timezone: Mars/Olympus}\n"
        "start: 2026-03-02T10:00:00+01:00\n"
        "events:\n"
        "  - {at: soon, type: signed_up}\n"
        "until: 10d\n"
    )

    result = cyklo("simulate", "--scenario", str(scenario))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(f"{scenario}:1: customer.locale: unsupported locale 'de'") for line in lines)
    assert any(line.startswith(f"{scenario}:1: customer.timezone: unknown time zone") for line in lines)
    assert any(line.startswith(f"{scenario}:4: events.0.at: bad duration 'soon'") for line in lines)


def test_scenario_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    scenario = tmp_path / "broken.yaml"
    scenario.write_text("customer: {id: c-1\nstart: now\n")

    with pytest.raises(ScenarioError) as error:
        load_scenario(scenario)

    assert str(error.value).startswith(f"{scenario}:")
    assert "YAML syntax error" in str(error.value)


def test_event_with_personal_data_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as error:
        IncomingEvent(
            customer_id="c-1", type="purchase", properties={"amount": 10, "buyer": {"email": "a@b.pl"}}
        )

    assert "personal data belongs in the customer profile" in str(error.value)
    assert error.value.errors()[0]["loc"] == ("properties", "buyer")


def test_event_without_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError) as error:
        IncomingEvent.model_validate(
            {"customer_id": "c-1", "type": "purchase", "occurred_at": "2026-03-02T10:00:00"}
        )

    assert error.value.errors()[0]["loc"] == ("occurred_at",)


def test_purchase_amount_must_be_a_number_and_numeric_text_is_taken() -> None:
    taken = IncomingEvent(customer_id="c-1", type="purchase", properties={"amount": "2500.00"})
    with pytest.raises(ValidationError) as error:
        IncomingEvent(customer_id="c-1", type="purchase", properties={"amount": "lots"})

    assert taken.properties["amount"] == 2500.0
    assert error.value.errors()[0]["loc"] == ("properties", "amount")
    assert "expected a finite number" in str(error.value)


def test_simulate_exits_1_when_a_message_fails_with_a_template_error(tmp_path: Path) -> None:
    """The journey validates (event properties are open), yet the purchase that starts the
    stage has no `coupon`: the message fails when it renders, and so does the command."""
    journeys = tmp_path / "journeys"
    for locale in ("pl", "en"):
        folder = journeys / "templates" / locale / "email"
        folder.mkdir(parents=True)
        (folder / "thanks.subject.txt").write_text("Thanks\n")
        (folder / "thanks.txt").write_text("Your code: {{ event.properties.coupon }}\n")
        (folder / "thanks.html").write_text("<p>Your code: {{ event.properties.coupon }}</p>\n")
    (journeys / "thanks.yaml").write_text(
        "journey: thanks\nname: Thanks\nentry:\n  - {on: purchase, to: bought}\n"
        "stages:\n  bought:\n    flow:\n      - send: {channel: email, template: thanks}\n"
    )
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "customer: {id: c-1, locale: pl, timezone: Europe/Warsaw, email: a@example.com,"
        " consents: {email: true, sms: false, source: test}}\n"
        "start: 2026-03-02T10:00:00+01:00\n"
        "events:\n  - {at: 0s, type: purchase, id: e-1, properties: {order_id: o-1, amount: 10.0}}\n"
        "until: 1d\n"
    )
    assert cyklo("validate", str(journeys)).returncode == 0

    result = cyklo("simulate", str(journeys), "--scenario", str(scenario))

    assert "✗ email thanks" in result.stdout
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "cyklo simulate: 1 message failed with a template error: thanks email thanks"
    )
