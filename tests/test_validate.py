"""`cyklo validate`: every kind of mistake a marketer makes, reported as `file:line: message`.

Each test writes a small journey and its templates into a temporary folder, works from
there (so paths read as the marketer sees them: `journeys/promo.yaml:9: ...`), breaks one
thing and checks the line that names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from definition.loader import LoadedJourney, load_journey
from definition.model import Journey, RepeatStep, SendStep, WaitStep, iter_steps
from definition.templates import parts, relative_path
from definition.yaml_source import load_yaml
from settings import get_settings

SHIPPED_JOURNEYS = Path(__file__).resolve().parents[1] / "journeys"

MINIMAL = """\
journey: promo
name: Promo
entry:
  - {on: signed_up, to: welcome}
stages:
  welcome:
    flow:
      - send: {channel: email, template: welcome}
      - wait: 2d
      - branch:
          if: "metrics.orders > 0"
          then:
            - send: {channel: sms, template: thanks}
    transitions:
      - {on: purchase, to: customer}
  customer:
    flow: []
"""
"""Line 8 sends the email, 9 waits, 11 is the branch's condition, 13 sends the SMS,
15 is the transition and 16 the second stage."""

TEMPLATES = {
    "LOCALE/email/_layout.html": """\
<html><body>
{% block body %}{% endblock %}
<a href="{{ links.unsubscribe }}">unsubscribe</a>
</body></html>
""",
    "LOCALE/email/welcome.subject.txt": "Welcome to {{ shop.name }}\n",
    "LOCALE/email/welcome.html": """\
{% extends "LOCALE/email/_layout.html" %}
{% block body %}<p>Hello {{ customer.first_name }}</p>{% endblock %}
""",
    "LOCALE/email/welcome.txt": "Hello {{ customer.first_name }}\n",
    "LOCALE/sms/thanks.txt": "Thanks for your order at {{ shop.name }}\n",
}
"""What the minimal journey sends, written for each of its locales (pl, en) in place of LOCALE."""


@dataclass
class Project:
    """A working folder with `journeys/` (YAML files) and `journeys/templates/`."""

    journeys: Path

    def write(self, text: str, name: str = "promo.yaml") -> Path:
        path = self.journeys / name
        path.write_text(text, encoding="utf-8")
        return path

    def template(self, relative: str, text: str) -> None:
        path = self.journeys / "templates" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def load(self, text: str = MINIMAL) -> LoadedJourney:
        loaded, problems = load_journey(self.write(text))
        assert problems == [] and loaded is not None, problems
        return loaded

    def problems(self, text: str = MINIMAL) -> list[str]:
        """The problems of the journey file, each as `cyklo validate` prints it."""
        loaded, problems = load_journey(self.write(text))
        assert loaded is None, "a journey with problems must not load"
        return [str(problem) for problem in problems]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    project = Project(tmp_path / "journeys")
    for locale in ("pl", "en"):
        for relative, text in TEMPLATES.items():
            project.template(relative.replace("LOCALE", locale), text.replace("LOCALE", locale))
    project.write(MINIMAL)
    return project


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def cyklo(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    # CliRunner swallows an escaped exception (a traceback for a real user): fail on it.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


# A valid journey


def test_minimal_journey_loads_with_the_templates_it_uses_and_their_layout(project: Project) -> None:
    loaded = project.load()

    assert loaded.definition.journey == "promo"
    assert sorted(loaded.templates) == [
        "en/email/_layout.html",
        "en/email/welcome.html",
        "en/email/welcome.subject.txt",
        "en/email/welcome.txt",
        "en/sms/thanks.txt",
        "pl/email/_layout.html",
        "pl/email/welcome.html",
        "pl/email/welcome.subject.txt",
        "pl/email/welcome.txt",
        "pl/sms/thanks.txt",
    ]
    assert loaded.templates["pl/sms/thanks.txt"] == TEMPLATES["LOCALE/sms/thanks.txt"]


def test_content_hash_changes_when_a_used_template_changes_and_only_then(project: Project) -> None:
    first = project.load().content_hash
    project.template("pl/email/unused.html", "not used by the journey\n")
    unchanged = project.load().content_hash
    project.template("pl/email/_layout.html", "<html>{% block body %}{% endblock %}</html>\n")
    changed = project.load().content_hash

    assert len(first) == 64 and first == unchanged
    assert changed != first


def test_unquoted_time_of_day_means_that_time(project: Project) -> None:
    loaded = project.load(MINIMAL.replace("- wait: 2d", "- wait: {until: 10:30}"))

    (wait,) = [
        step for step in iter_steps(loaded.definition.stages["welcome"].flow) if isinstance(step, WaitStep)
    ]
    assert wait.wait.until == time(10, 30), "YAML 1.1 would read 10:30 as the number 630"


def test_wait_until_a_time_of_day_counted_from_the_stage_is_fine(project: Project) -> None:
    loaded = project.load(MINIMAL.replace("- wait: 2d", "- wait: {until: '10:00', since: stage}"))

    (wait,) = [
        step for step in iter_steps(loaded.definition.stages["welcome"].flow) if isinstance(step, WaitStep)
    ]
    assert (wait.wait.until, wait.wait.since, wait.wait.duration) == (time(10, 0), "stage", None)


# The YAML


def test_yaml_syntax_error_names_the_line(project: Project) -> None:
    found = project.problems(MINIMAL.replace("    flow: []", "    flow: [send"))

    assert len(found) == 1
    assert found[0].startswith("journeys/promo.yaml:17: YAML syntax error: ")
    assert "while parsing a flow sequence" in found[0]


def test_tab_indentation_is_named_with_the_fix(project: Project) -> None:
    found = project.problems(MINIMAL.replace("    flow: []", "\tflow: []"))

    assert found == [
        "journeys/promo.yaml:17: YAML syntax error: a tab character: indent with spaces, not tabs"
    ]


def test_duplicate_key_is_named_because_yaml_would_drop_the_first(project: Project) -> None:
    found = project.problems(MINIMAL + "  welcome:\n    flow: []\n")

    assert (
        "journeys/promo.yaml:18: duplicate key 'welcome' (also on line 6): YAML keeps only the last one"
        in found
    )


def test_a_key_overriding_a_yaml_merge_is_not_a_duplicate(project: Project) -> None:
    loaded = project.load(
        MINIMAL.replace(
            "{channel: sms, template: thanks}", "{<<: &sms {channel: sms, template: x}, template: thanks}"
        )
    )

    sends = [
        step.send
        for step in iter_steps(loaded.definition.stages["welcome"].flow)
        if isinstance(step, SendStep)
    ]
    assert ("sms", "thanks") in [(send.channel, send.template) for send in sends], "the override wins"


# The schema


def test_unknown_step_kind_names_the_line_and_suggests(project: Project) -> None:
    found = project.problems(MINIMAL.replace("- wait: 2d", "- wiat: 2d"))

    assert found == ["journeys/promo.yaml:9: unknown step 'wiat' — did you mean 'wait'?"]


def test_two_steps_in_one_item_are_named(project: Project) -> None:
    found = project.problems(MINIMAL.replace("      - wait: 2d\n", "        wait: 2d\n"))

    assert found == [
        "journeys/promo.yaml:8: one step per '- ' item, but this one has send, wait: "
        "start each step on its own '- ' line"
    ]


def test_unknown_field_names_the_line_and_suggests_a_field_of_that_step(project: Project) -> None:
    found = project.problems(MINIMAL.replace("template: welcome", "templat: welcome"))

    assert found == ["journeys/promo.yaml:8: unknown field 'templat' — did you mean 'template'?"]


def test_unknown_field_without_a_close_match_lists_the_fields(project: Project) -> None:
    found = project.problems(
        MINIMAL.replace("  customer:\n    flow: []", "  customer:\n    flow: []\n    colour: red")
    )

    assert found == ["journeys/promo.yaml:18: unknown field 'colour': use description, flow, transitions"]


def test_missing_required_field_names_the_line(project: Project) -> None:
    found = project.problems(MINIMAL.replace("{channel: sms, template: thanks}", "{template: thanks}"))

    assert found == ["journeys/promo.yaml:13: missing required field 'channel'"]


def test_wrong_type_names_the_line_and_what_was_given(project: Project) -> None:
    found = project.problems(
        MINIMAL.replace("{channel: sms, template: thanks}", "{channel: fax, template: thanks}")
    )

    assert found == ["journeys/promo.yaml:13: channel should be 'email', 'sms' or 'webhook', not 'fax'"]


def test_bad_duration_names_the_line(project: Project) -> None:
    found = project.problems(MINIMAL.replace("wait: 2d", "wait: 2 days"))

    assert len(found) == 1 and found[0].startswith("journeys/promo.yaml:9: bad duration '2 days': ")


def test_duration_without_a_unit_asks_for_one(project: Project) -> None:
    found = project.problems(MINIMAL.replace("wait: 2d", "wait: 2"))

    assert found == ["journeys/promo.yaml:9: bad duration 2: add a unit, e.g. 2d or 2h"]


# Stages


def test_unknown_stage_in_entry_names_the_line_and_suggests(project: Project) -> None:
    found = project.problems(MINIMAL.replace("to: welcome}", "to: welcom}"))

    assert found == ["journeys/promo.yaml:4: unknown stage 'welcom' — did you mean 'welcome'?"]


def test_unknown_stage_in_transition_names_the_line_and_suggests(project: Project) -> None:
    found = project.problems(MINIMAL.replace("to: customer}", "to: custmer}"))

    assert found == ["journeys/promo.yaml:15: unknown stage 'custmer' — did you mean 'customer'?"]


def test_unreachable_stage_is_named_at_its_name(project: Project) -> None:
    found = project.problems(
        MINIMAL.replace("      - {on: purchase, to: customer}\n", "      - {on: purchase, to: welcome}\n")
    )

    assert found == [
        "journeys/promo.yaml:16: stage 'customer' is unreachable: "
        "no entry, nor a transition from a stage that is reached, leads to it"
    ]


def test_stages_leading_only_to_each_other_are_unreachable(project: Project) -> None:
    found = project.problems(
        MINIMAL.replace("    flow: []\n", "    flow: []\n    transitions: [{on: purchase, to: vip}]\n")
        + "  vip:\n    transitions: [{on: refund, to: customer}]\n"
        + "  lost:\n    transitions: [{on: purchase, to: welcome}]\n"
    )

    assert [line.split(": ")[0] for line in found] == ["journeys/promo.yaml:21"]
    assert "stage 'lost' is unreachable" in found[0]


# Templates


def test_missing_template_names_the_send_and_suggests(project: Project) -> None:
    found = project.problems(MINIMAL.replace("template: welcome", "template: welcom"))

    assert (
        "journeys/promo.yaml:8: missing template pl/email/welcom.html for send 'welcom' — did you mean 'welcome'?"
        in found
    )
    assert len(found) == 6, "every part in every locale"


def test_missing_part_of_one_locale_is_named(project: Project) -> None:
    (project.journeys / "templates" / "en" / "sms" / "thanks.txt").unlink()

    found = project.problems()

    assert found == ["journeys/promo.yaml:13: missing template en/sms/thanks.txt for send 'thanks'"]


def test_missing_locale_is_named_at_the_locales_line(project: Project) -> None:
    found = project.problems(MINIMAL.replace("name: Promo\n", "name: Promo\nlocales: [pl, de]\n"))

    assert found == ["journeys/promo.yaml:3: locale 'de' has no templates: no folder journeys/templates/de"]


def test_template_syntax_error_names_the_template_file_and_line(project: Project) -> None:
    project.template(
        "en/email/welcome.txt", "Hello\n\n{% if customer.first_name %}\n{{ customer.first_name }\n"
    )

    found = project.problems()

    assert len(found) == 1
    assert found[0].startswith("journeys/templates/en/email/welcome.txt:4: template syntax error: ")


def test_variable_not_in_the_template_context_is_named_at_its_first_use(project: Project) -> None:
    project.template(
        "pl/email/welcome.subject.txt", "Witaj\n{{ customr.first_name }}\n{{ customr.first_name }}\n"
    )

    found = project.problems()

    assert found == [
        "journeys/templates/pl/email/welcome.subject.txt:2: variable 'customr' is not available "
        "— did you mean 'customer'? (available: customer, discount_code, event, links, metrics, shop)"
    ]


def test_cli_names_a_misspelt_customer_field_in_every_locale_once_per_place(project: Project) -> None:
    for locale in ("pl", "en"):
        project.template(
            f"{locale}/email/welcome.txt",
            "Hello {{ customer.frist_name }}\n{{ customer.frist_name }} {{ customer.frist_name }}\n",
        )

    result = cyklo("validate", "journeys")

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"journeys/templates/{locale}/email/welcome.txt:{line}: "
        "customer has no field 'frist_name'; did you mean 'first_name'?"
        for locale in ("en", "pl")
        for line in (1, 2)
    ]


def test_fields_are_checked_in_layouts_and_event_properties_stay_open(project: Project) -> None:
    project.template(
        "pl/email/_layout.html",
        "<html>{% block body %}{% endblock %}\n{{ links.unsubscibe }}{{ event.properties.coupon_code }}</html>\n",
    )

    assert project.problems() == [
        "journeys/templates/pl/email/_layout.html:2: links has no field 'unsubscibe'; did you mean 'unsubscribe'?"
    ]


def test_missing_layout_is_named_at_the_extends_line(project: Project) -> None:
    project.template("en/email/welcome.html", '{# the new look #}\n{% extends "en/email/_frame.html" %}\n')

    found = project.problems()

    assert found == [
        "journeys/templates/en/email/welcome.html:2: template 'en/email/_frame.html' not found under journeys/templates"
    ]


def test_layout_outside_the_templates_folder_is_refused(project: Project) -> None:
    project.template("en/email/welcome.html", '{% extends "../../secrets.txt" %}\n')
    (project.journeys.parent / "secrets.txt").write_text("password\n")

    found = project.problems()

    assert found == [
        "journeys/templates/en/email/welcome.html:1: template '../../secrets.txt' must be named from journeys/templates"
    ]


# Conditions, splits and repeats

WITH_CONDITIONS = """\
journey: promo
name: Promo
entry:
  - {on: signed_up, when: "event.properties.source == 'shop'", to: welcome}
stages:
  welcome:
    flow:
      - wait_for:
          event: purchase
          when: "event.properties.amount > 100"
          timeout: 3d
      - branch:
          if: "metrics.orders > 0"
    transitions:
      - {on: purchase, when: "metrics.orders_365d >= 5", to: welcome}
"""


@pytest.mark.parametrize(
    ("condition", "line"),
    [
        ("event.properties.source == 'shop'", 4),
        ("event.properties.amount > 100", 10),
        ("metrics.orders > 0", 13),
        ("metrics.orders_365d >= 5", 15),
    ],
    ids=["entry when", "wait_for when", "branch if", "transition when"],
)
def test_condition_problems_are_named_at_the_condition_line(
    project: Project, condition: str, line: int
) -> None:
    project.load(WITH_CONDITIONS)

    unknown_name = project.problems(WITH_CONDITIONS.replace(condition, "customer.vip"))
    bad_syntax = project.problems(WITH_CONDITIONS.replace(condition, "metrics.orders >> 1"))

    assert unknown_name == [
        f"journeys/promo.yaml:{line}: condition 'customer.vip' uses unknown name 'customer': "
        "use event, experiments, metrics, previous_stage, stage"
    ]
    assert len(bad_syntax) == 1
    assert bad_syntax[0].startswith(
        f"journeys/promo.yaml:{line}: condition 'metrics.orders >> 1' is not valid"
    )


def test_unknown_metric_in_condition_is_named(project: Project) -> None:
    found = project.problems(MINIMAL.replace("metrics.orders > 0", "metrics.ordrs > 0"))

    assert len(found) == 1
    assert found[0].startswith(
        "journeys/promo.yaml:11: condition 'metrics.ordrs > 0' uses unknown metric 'ordrs'"
    )


SPLIT = """\
      - split:
          name: subject_line
          arms:
            - {name: short, weight: 1}
            - {name: long, weight: 1}
"""


def test_split_arm_names_must_differ(project: Project) -> None:
    with_split = MINIMAL.replace("      - wait: 2d\n", SPLIT)
    project.load(with_split)

    found = project.problems(with_split.replace("{name: long,", "{name: short,"))

    assert found == [
        "journeys/promo.yaml:13: split 'subject_line' has two arms named 'short': arm names must differ"
    ]


def test_repeat_without_times_or_wait_loops_forever(project: Project) -> None:
    found = project.problems(
        MINIMAL.replace(
            "      - wait: 2d\n",
            "      - repeat:\n          flow:\n            - send: {channel: email, template: welcome}\n",
        )
    )

    assert found == [
        "journeys/promo.yaml:9: repeat without `times` loops forever: add a wait to its flow, e.g. `- wait: 30d`"
    ]


@pytest.mark.parametrize(
    "wait",
    [
        "- branch: {if: 'metrics.orders > 0', then: [wait: 3d]}",
        "- wait: {duration: 30d, since: stage}",
    ],
    ids=["only in a branch", "since the stage began"],
)
def test_repeat_whose_wait_can_be_skipped_may_loop_forever(project: Project, wait: str) -> None:
    repeat = f"      - repeat:\n          flow:\n            {wait}\n            - send: {{channel: email, template: welcome}}\n"

    found = project.problems(MINIMAL.replace("      - wait: 2d\n", repeat))

    assert len(found) == 1
    assert found[0].startswith(
        "journeys/promo.yaml:9: repeat without `times` may loop forever: none of its waits pauses on every round"
    )


@pytest.mark.parametrize(
    "flow",
    [
        "[wait: 30d, send: {channel: email, template: welcome}]",
        "[wait: {until: '10:00', since: stage}]",
        "[wait_for: {event: purchase, timeout: 7d}]",
        "[branch: {if: 'metrics.orders > 0', then: [wait: 1d], else: [exit]}]",
    ],
    ids=["wait", "until a time of day", "wait_for", "wait or exit on both paths"],
)
def test_repeat_that_pauses_every_round_is_fine(project: Project, flow: str) -> None:
    loaded = project.load(MINIMAL.replace("      - wait: 2d\n", f"      - repeat: {{flow: {flow}}}\n"))

    repeats = [
        step for step in iter_steps(loaded.definition.stages["welcome"].flow) if isinstance(step, RepeatStep)
    ]
    assert len(repeats) == 1 and repeats[0].repeat.times is None and repeats[0].repeat.flow


# One pass


def test_several_problems_of_one_file_are_all_reported_in_one_pass(project: Project) -> None:
    broken = (
        MINIMAL.replace("template: welcome", "template: welcom")
        .replace("- wait: 2d", "- wait: 2 days")
        .replace("metrics.orders > 0", "metrics.x > 0")
        .replace("to: customer}", "to: custmer}")
    )

    found = project.problems(broken)

    assert [line.split(": ")[0] for line in found] == ["journeys/promo.yaml:8"] * 6 + [
        "journeys/promo.yaml:9",
        "journeys/promo.yaml:11",
        "journeys/promo.yaml:15",
    ]
    assert "bad duration '2 days'" in found[6]
    assert "uses unknown metric 'x'" in found[7]
    assert "unknown stage 'custmer'" in found[8]


# The command


def test_cli_says_ok_with_the_journeys_and_templates(project: Project) -> None:
    project.write(MINIMAL.replace("journey: promo", "journey: winback"), "winback.yml")
    (project.journeys / "notes.txt").write_text("not a journey\n")

    result = cyklo("validate", "journeys")

    assert result.exit_code == 0
    assert result.stdout == "ok: 2 journeys (promo, winback), 10 templates\n"


def test_cli_validates_the_configured_journeys_folder_by_default(
    project: Project, monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    monkeypatch.setenv("CYKLO_JOURNEYS_DIR", str(project.journeys))

    result = cyklo("validate")

    assert result.exit_code == 0 and result.stdout.startswith("ok: 1 journey (promo)")


def test_cli_prints_each_problem_to_stderr_and_exits_1(project: Project) -> None:
    project.write(MINIMAL.replace("to: customer}", "to: custmer}").replace("metrics.orders", "metrics.x"))

    result = cyklo("validate", "journeys/promo.yaml")

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("journeys/promo.yaml:11: condition 'metrics.x > 0' uses unknown metric 'x'")
    assert lines[1] == "journeys/promo.yaml:15: unknown stage 'custmer' — did you mean 'customer'?"


def test_cli_same_journey_id_in_two_files_is_a_problem(project: Project) -> None:
    project.write(MINIMAL, "promo_copy.yaml")

    result = cyklo("validate", "journeys")

    assert result.exit_code == 1
    assert result.stderr == (
        "journeys/promo_copy.yaml:1: journey 'promo' is already defined in journeys/promo.yaml: "
        "each journey needs its own id\n"
    )


def test_cli_missing_path_is_a_clear_error_with_exit_2(project: Project) -> None:
    result = cyklo("validate", "journeys", "jouneys/promo.yaml")

    assert result.exit_code == 2
    assert result.stderr == "cyklo validate: jouneys/promo.yaml: no such file or folder\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\xff\xfe\x89PNG binary", "journeys/broken.yaml:1: not a journey file: it is not UTF-8 text"),
        (b"journey: x\nname: \x00\n", "journeys/broken.yaml:2: YAML syntax error: character #x0000: "),
        (b"- just\n- a list\n", "journeys/broken.yaml:1: a journey file is a mapping with journey, name"),
        (b"[[[[" * 2000, "journeys/broken.yaml:1: YAML nested too deeply to read"),
    ],
    ids=["binary", "control character", "not a mapping", "deeply nested"],
)
def test_cli_garbage_file_gets_one_clear_line_not_a_traceback(
    project: Project, content: bytes, message: str
) -> None:
    (project.journeys / "broken.yaml").write_bytes(content)

    result = cyklo("validate", "journeys/broken.yaml")

    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)
    assert "Traceback" not in result.output


def test_cli_unexpected_error_is_one_line_not_a_traceback(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(paths: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("cli.validate.load_journeys_or_raise", broken)

    result = cyklo("validate", "journeys")

    assert result.exit_code not in (0, 1)
    assert result.stderr.splitlines() == [
        "cyklo: disk on fire (unexpected: please report it with the command you ran)"
    ]


# The shipped journeys


def unwritten_shipped_templates() -> list[str]:
    """Templates the shipped journeys send that do not exist yet."""
    missing = []
    for file in sorted(SHIPPED_JOURNEYS.glob("*.yaml")):
        journey = Journey.model_validate(load_yaml(file.read_text(encoding="utf-8")))
        for stage in journey.stages.values():
            for step in iter_steps(stage.flow):
                if not isinstance(step, SendStep):
                    continue
                for locale in journey.locales:
                    for part in parts(step.send.channel):
                        relative = relative_path(locale, step.send.channel, step.send.template, part)
                        if not (SHIPPED_JOURNEYS / "templates" / relative).is_file():
                            missing.append(relative)
    return missing


def test_shipped_journeys_validate_cleanly() -> None:
    missing = unwritten_shipped_templates()
    if missing:
        pytest.skip(f"journeys/templates/ is still being written; missing {', '.join(missing[:3])}, ...")

    result = cyklo("validate", str(SHIPPED_JOURNEYS))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 2 journeys (abandoned_cart, lifecycle), ")


# Webhooks

WEBHOOK = MINIMAL.replace(
    "{channel: sms, template: thanks}",
    '{channel: webhook, template: order, url: "https://shop.example.com/hooks"}',
)


def test_webhook_template_that_renders_no_json_is_named_at_its_line(project: Project) -> None:
    project.template("pl/webhook/order.json", '{"ok": true}\n')
    project.template(
        "en/webhook/order.json", '{\n  "name": {{ customer.first_name | tojson }},\n  "code": x\n}\n'
    )

    found = project.problems(WEBHOOK)

    assert found == [
        "journeys/templates/en/webhook/order.json:3: webhook body is not JSON: "
        "Expecting value (line 3 of the output)"
    ]


def test_webhook_send_needs_a_url_and_only_a_webhook_takes_one(project: Project) -> None:
    for locale in ("pl", "en"):
        project.template(f"{locale}/webhook/order.json", "{}\n")

    loaded = project.load(WEBHOOK)
    assert "en/webhook/order.json" in loaded.templates
    without_url = project.problems(WEBHOOK.replace(', url: "https://shop.example.com/hooks"', ""))
    email_with_url = project.problems(
        MINIMAL.replace(
            "{channel: email, template: welcome}",
            '{channel: email, template: welcome, url: "https://x.example"}',
        )
    )

    assert len(without_url) == 1 and without_url[0].startswith("journeys/promo.yaml:13: ")
    assert "needs `url: https://...`" in without_url[0]
    assert len(email_with_url) == 1 and email_with_url[0].startswith("journeys/promo.yaml:8: ")
