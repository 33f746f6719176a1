"""Templates and conditions are bounded in work, time and size; messages in size per channel.

The reproductions of issue 8 item 3 each finish in a few seconds with an error that names
the file and line (validate) or a `template error` in the ledger (send), never a hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from activities import email, sms
from cli.main import app
from definition import conditions, templates
from definition.sandbox import MAX_RANGE, MAX_VALUE, Budget, LimitExceeded, spending
from emulator.server import ProviderEmulator
from simulation.runner import simulate
from storage.database import session_for
from storage.models import Message
from tests.conftest import make_scenario, messages

UNCOUNTED_WORK = 10**12
"""A work budget no test template spends, so the deadline is the only bound that can stop it
(on a fast machine the operations bound would otherwise come first)."""


def render(
    source: str, seconds: float = 2.0, name: str = "t.txt", work: int = templates.RENDER_WORK, **context: object
) -> str:
    env = templates.environment({name: source})
    with spending(templates.template_budget(work, seconds)):
        return templates.render_part(env, name, dict(context))


def fails(
    source: str, seconds: float = 2.0, name: str = "t.txt", work: int = templates.RENDER_WORK, **context: object
) -> str:
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as error:
        render(source, seconds, name, work, **context)
    assert time.monotonic() - started < seconds + 1.5, "the bound must stop it, not the test's patience"
    return str(error.value)


# The sandbox: each bound, without a server


@pytest.mark.parametrize(
    ("source", "bound"),
    [
        ("{{ 10**(10**10) }}", "number too large"),
        ("{{ 7 ** 100000 }}", "number too large"),
        ("{{ 'x' * 10**12 }}", "would make more than"),
        ("{{ [1] * 200000 }}", "list too long"),
        ("{{ lipsum(1000000) }}", "lipsum makes at most"),
        (f"{{{{ range({MAX_RANGE + 1})|list }}}}", "range too long"),
        ("{{ 'x'|center(10**9) }}", "too large"),
        ("{{ 'x'.ljust(10**9) }}", "too large"),
        ("{{ (1).to_bytes(10**9, 'big') }}", "too large"),
        ("{{ '{:>1000000000}'.format(1) }}", "format width"),
        ("{{ '{:>{}}'.format(1, 10**9) }}", "format width"),
        ("{{ '%1000000000s' % 'a' }}", "format width"),
        ("{{ '%*s' % (10**9, 'a') }}", "format width"),
        ("{{ '%1000000000s'|format('a') }}", "format width"),
        ("{{ ('x' * 100000)|replace('x', 'x' * 100000) }}", "replace would make"),
        ("{{ ('y' * 100000).join('x' * 100000) }}", "join would make"),
        ("{{ ('x' * 100000)|join('y' * 100000) }}", "join would make"),
        ("{{ ('x\\n' * 1000)|indent(10**5) }}", "indent would make"),
        ("{{ ('\t' * 100000).expandtabs(100000) }}", "expandtabs would make"),
        ("{{ range(10000)|batch(1)|sum(start=[]) }}", "sum adds numbers"),
        ("{{ {'a': 1}|tojson(indent=100000) }}", "too large"),
        ("{% set a = 'x' * 900000 %}{{ [a, a, a] }}", "value too large"),
        ("{% set a = 'x' * 900000 %}{{ {'k': a, 'l': a}.items() }}", "value too large"),
        ("{% set a = 'x' * 900000 %}{{ a ~ a }}", "joining with ~"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "joining with ~",
        ),
        ("{% set a = 'x' * 900000 %}{{ '%s%s' % (a, a) }}", "formatting would make"),
        ("{% set a = 'x' * 900000 %}{{ '{0}{0}'.format(a) }}", "formatting would make"),
    ],
)
def test_a_template_past_a_size_bound_is_stopped_before_python_builds_the_value(source: str, bound: str) -> None:
    assert bound in fails(source)


def test_a_render_that_runs_past_its_time_budget_is_stopped_at_the_deadline() -> None:
    nested = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    assert "longer than 0.3 s" in fails(nested, seconds=0.3, work=UNCOUNTED_WORK)
    assert time.monotonic() - started < 1.5


def test_exponential_macro_recursion_is_stopped_at_the_deadline() -> None:
    source = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    assert "longer than 0.3 s" in fails(source, seconds=0.3, work=UNCOUNTED_WORK)


def test_output_past_the_part_budget_is_stopped_while_it_is_being_made() -> None:
    source = "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}"
    assert f"makes more than {templates.MAX_OUTPUT:,} characters" in fails(source)


def test_raw_text_repeated_inside_a_macro_spends_the_work_budget() -> None:
    # Raw text in a macro is collected before it is output: the work budget, which counts
    # every piece of output as it is made, stops it long before the join.
    chunk = "y" * 10_000
    source = f"{{% macro m() %}}{{% for i in range(10000) %}}{chunk}{{% endfor %}}{{% endmacro %}}{{{{ m() }}}}"
    assert "too much work" in fails(source, seconds=30)


def test_ordinary_templates_render_as_before() -> None:
    source = (
        "Hello {{ customer.first_name }}, {{ 'a' ~ 'b' }} {% for i in range(3) %}{{ i }}{% endfor %} "
        "{{ '%5.2f'|format(3.14159) }} {{ '{:>4}'.format('x') }} {{ items|join(', ') }} {{ 2 ** 10 }} "
        "{{ (total * 100)|round }} {{ 'x' * 3 }} {{ [1, 2] + [3] }} {{ 'abc'|center(7) }}"
    )
    rendered = render(source, customer={"first_name": "Ala"}, items=["a", "b"], total=2.5)
    assert rendered == "Hello Ala, ab 012  3.14    x a, b 1024 250.0 xxx [1, 2, 3]   abc  "


def test_concatenation_keeps_autoescape_in_html_templates() -> None:
    assert render("{{ '<b>' ~ who }}|{{ ('<i>'|safe) ~ who }}", name="t.html", who="A&B") == (
        "&lt;b&gt;A&amp;B|<i>A&amp;B"
    )


def test_a_condition_is_bounded_by_work_not_time_and_gives_the_same_answer_each_time() -> None:
    context = conditions.sample_context()
    for expression in ("9**(9**8) > 0", "('x' * 1000000)|length > 0", "'a'|center(10**9) == 'a'"):
        started = time.monotonic()
        outcomes = []
        for _ in range(2):
            with pytest.raises(conditions.ConditionError) as error:
                conditions.evaluate(expression, context)
            outcomes.append(str(error.value))
        assert outcomes[0] == outcomes[1]
        assert time.monotonic() - started < 1
    assert conditions.evaluate("metrics.orders >= 2 and event.properties.category == 'shoes'", context)


def test_a_budget_spent_by_a_condition_is_counted_in_operations() -> None:
    budget = Budget(work=conditions.WORK)
    with spending(budget):
        assert conditions._compiled("metrics.orders + 1 > 0")(**conditions.sample_context())
    assert 0 < conditions.WORK - budget.work < 20


# Per-channel caps


def test_email_caps_name_the_cap() -> None:
    assert email.size_problem("s" * 998, "h", "t") is None
    assert email.size_problem("s" * 999, "h", "t") == "email subject is 999 characters: at most 998"
    assert email.size_problem("a\nb", "h", "t") == "email subject has a line break: a subject is one line"
    assert email.size_problem("s", "h" * (email.MAX_BODY_BYTES + 1), "t") == (
        f"email HTML body is {email.MAX_BODY_BYTES + 1:,} bytes: at most {email.MAX_BODY_BYTES:,}"
    )
    assert email.size_problem("s", "h", "ż" * (email.MAX_BODY_BYTES // 2 + 1)) is not None


def test_sms_cap_counts_segments_as_the_carrier_does() -> None:
    assert sms.size_problem("a" * 153 * 10) is None
    assert sms.size_problem("a" * (153 * 10 + 1)) == "SMS is 11 segments (GSM-7): at most 10"
    assert sms.size_problem("ż" * 67 * 10) is None
    assert sms.size_problem("ż" * (67 * 10 + 1)) == "SMS is 11 segments (UCS-2): at most 10"


# `cyklo validate`: the reproductions of item 3, each a `file:line` error within seconds

JOURNEY = """\
journey: promo
name: Promo
locales: [en]
entry:
  - {on: signed_up, to: welcome}
stages:
  welcome:
    flow:
      - branch:
          if: "WHEN"
          then:
            - send: {channel: email, template: welcome}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    journeys = tmp_path / "journeys"
    (journeys / "templates" / "en" / "email").mkdir(parents=True)
    yield journeys


def _write(journeys: Path, when: str = "metrics.orders > 0", **parts: str) -> None:
    (journeys / "promo.yaml").write_text(JOURNEY.replace("WHEN", when), encoding="utf-8")
    for part in templates.EMAIL_PARTS:
        text = parts.get(part.replace(".", "_"), "Hello {{ customer.first_name }}\n")
        (journeys / "templates" / "en" / "email" / f"welcome.{part}").write_text(text, encoding="utf-8")


def _validate() -> tuple[int, list[str], float]:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["validate", "journeys"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.output.splitlines(), time.monotonic() - started


def test_validate_accepts_the_bounded_journey(folder: Path) -> None:
    _write(folder)
    code, output, _ = _validate()
    assert code == 0, output


@pytest.mark.parametrize(
    ("html", "line", "message"),
    [
        ("<p>\n{{ 10**(10**10) }}</p>\n", 2, "goes past a limit: number too large"),
        ("<p>\n{% if event.type == 'never' %}\n{{ 'x' * 10**12 }}{% endif %}</p>\n", 3, "goes past a limit"),
        ("{{ lipsum(1000000) }}\n", 1, "lipsum"),
        ("{{ range(100000000)|list }}\n", 1, "goes past a limit: range too long"),
        (
            "<p>\n\n{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}\n",
            3,
            "goes past a limit: too much work",
        ),
        ("{% set s = 'x' * 400000 %}\n{{ s ~ s ~ s }}\n", 2, "goes past a limit: joining with ~"),
    ],
)
def test_validate_reports_a_template_past_a_bound_at_its_line_within_seconds(
    folder: Path, html: str, line: int, message: str
) -> None:
    _write(folder, html=html)
    code, output, took = _validate()
    assert code == 1
    assert any(
        entry.startswith(f"journeys/templates/en/email/welcome.html:{line}: ") and message in entry
        for entry in output
    ), output
    assert took < 8


@pytest.mark.parametrize(
    "condition",
    ["9**(9**8) > 0", "metrics.orders > 0 and 9**(9**8) > 0", "'a'|center(10**9) == 'a'", "(" * 2000 + "1" + ")" * 2000],
)
def test_validate_reports_a_condition_past_a_bound_at_its_line(folder: Path, condition: str) -> None:
    _write(folder, when=condition)
    code, output, took = _validate()
    assert code == 1
    assert any(entry.startswith("journeys/promo.yaml:10: condition") for entry in output), output
    assert took < 8


def test_validate_refuses_a_yaml_alias_bomb_at_once(folder: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
    _write(folder)
    (folder / "promo.yaml").write_text(JOURNEY.replace("WHEN", "true") + bomb, encoding="utf-8")
    code, output, took = _validate()
    assert code == 1
    assert output == [
        "journeys/promo.yaml:18: the file stands for more than 100,000 values once its *aliases are expanded"
    ]
    assert took < 8


# The send activity on the real path: bounded templates are template errors, the journey goes on

LIMITS_JOURNEY = """\
journey: limits
name: Limits
locales: [en]
entry:
  - {on: purchase, to: bought}
stages:
  bought:
    flow:
      - send: {channel: email, template: huge, transactional: true}
      - send: {channel: email, template: slow, transactional: true}
      - send: {channel: email, template: long_subject, transactional: true}
      - send: {channel: sms, template: long_sms, transactional: true}
      - branch:
          if: "(event.properties.amount|int) ** (event.properties.amount|int) > 0"
          then:
            - send: {channel: email, template: huge, transactional: true}
          else:
            - send: {channel: email, template: fine, transactional: true}
"""

LIMITS_TEMPLATES = {
    # Each is fine for validate's sample customer (an order of 120.0, order o-1, shoes) and
    # goes past a bound only for the order below.
    "email/huge": ("Huge", "<p>{{ 'x' * (event.properties.amount|int) }}</p>", "huge"),
    "email/slow": (
        "Slow",
        "{% if event.properties.order_id == 'slow' %}{% for a in range(10000) %}{% for b in range(10000) %}"
        "{% endfor %}{% endfor %}{% endif %}<p>slow</p>",
        "slow",
    ),
    "email/long_subject": ("{{ event.properties.category * 50 }}", "<p>long</p>", "long"),
    "email/fine": ("Thank you", "<p>Thank you, {{ customer.first_name }}</p>", "Thank you"),
}


async def test_a_message_past_a_bound_is_a_template_error_nothing_is_sent_and_the_journey_goes_on(
    tmp_path: Path, emulator: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    journeys = tmp_path / "journeys"
    for relative, (subject, html, text) in LIMITS_TEMPLATES.items():
        folder = journeys / "templates" / "en" / relative.split("/")[0]
        folder.mkdir(parents=True, exist_ok=True)
        name = relative.split("/")[1]
        (folder / f"{name}.subject.txt").write_text(subject, encoding="utf-8")
        (folder / f"{name}.html").write_text(html, encoding="utf-8")
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    (journeys / "templates" / "en" / "sms").mkdir()
    (journeys / "templates" / "en" / "sms" / "long_sms.txt").write_text(
        "{{ 'ż' * (event.properties.amount|int // 100000) }}", encoding="utf-8"
    )
    (journeys / "limits.yaml").write_text(LIMITS_JOURNEY, encoding="utf-8")
    monkeypatch.setenv("CYKLO_RENDER_SECONDS", "0.5")
    monkeypatch.setattr(templates, "RENDER_WORK", UNCOUNTED_WORK)
    database_url = f"sqlite:///{tmp_path}/limits.db"
    order = {"order_id": "slow", "amount": 100_000_000, "category": "shoes-and-boots-sale"}
    scenario = make_scenario(
        {"at": "0s", "type": "purchase", "id": "e-1", "properties": order}, until="1d", locale="en"
    )

    started = time.monotonic()
    result = await simulate([journeys], scenario, emulator=emulator, database_url=database_url)

    assert time.monotonic() - started < 60
    outcome = [(entry.template, entry.status) for entry in messages(result)]
    assert outcome == [
        ("huge", "failed"),
        ("slow", "failed"),
        ("long_subject", "failed"),
        ("long_sms", "failed"),
        ("fine", "sent"),
    ]
    with session_for(database_url) as session:
        reasons = {row.template: row.reason for row in session.exec(select(Message)).all()}
    assert reasons["huge"] == f"template error: repeating would make more than {MAX_VALUE:,} characters"
    assert reasons["slow"] == "template error: rendering took longer than 0.5 s"
    assert reasons["long_subject"] == "template error: email subject is 1,000 characters: at most 998"
    assert reasons["long_sms"] == "template error: SMS is 15 segments (UCS-2): at most 10"
    assert [mail.subject for mail in emulator.messages("email")] == ["Thank you"]
    assert emulator.messages("sms") == []
