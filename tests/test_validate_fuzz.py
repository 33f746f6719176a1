"""Random journey files and templates through `cyklo validate`: no crash, every problem at
`file:line`, each file checked in bounded time.

Three generators: journeys shaped like the real ones with random values in every place
(conditions and templates from Jinja fragments, past-the-bound ones among them), raw text
made of YAML's punctuation, and templates alone made of Jinja's.
"""

from __future__ import annotations

import re
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app

EXAMPLE_SECONDS = 20
"""One journey with up to three messages in two locales: sample renders stop at 2 s each."""
FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=EXAMPLE_SECONDS),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROBLEM = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): \S")

WORDS = [
    "journey", "name", "entry", "stages", "locales", "flow", "transitions", "send", "wait", "wait_for",
    "branch", "split", "repeat", "exit", "on", "to", "when", "if", "then", "else", "after", "without",
    "channel", "template", "transactional", "conversion_window", "duration", "since", "until", "event",
    "timeout", "on_timeout", "arms", "weight", "holdout", "times", "reason", "quiet_hours", "versioning",
]  # fmt: skip
SCALARS = st.one_of(
    st.sampled_from(WORDS + ["email", "sms", "welcome", "pl", "en", "3d", "1d2h", "10:00", "stage", "purchase"]),
    st.text(max_size=12),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just(int("9" * 200)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["99999999999999999d", "0s", "-1d", "1e999", "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")]),
)
JINJA = [
    "{{ ", " }}", "{% ", " %}", "{# ", " #}", "customer.first_name", "metrics.orders", "event.properties.amount",
    "shop.name", "links.unsubscribe", "discount_code", "10**(10**10)", "9**(9**8)", "'x' * 10**9", "lipsum(1000000)",
    "range(100000)", "for i in range(10000)", "endfor", "if metrics.orders > 0", "else", "endif", "macro m(n)",
    "endmacro", "m(40)", "|center(10**9)", "|join(', ')", "|upper", "~ 'x'", " + 1", " * ", " ** ", "(", ")", "[",
    "]", "'", '"', "set x = ", "x", "include 'missing.html'", "extends 'pl/email/welcome.html'", "block b",
    "endblock", "\n", "Hello ", "<p>", "</p>", "%", "{", "}", "\udcff", "\x00", "1" * 5000,
]  # fmt: skip
templates_text = st.lists(st.sampled_from(JINJA) | st.text(max_size=8), max_size=30).map("".join)
conditions_text = st.lists(
    st.sampled_from(
        ["metrics.orders", "metrics.spent_365d", "event.properties.category", "stage", ">", "==", "and", "or",
         "not", "5", "'shoes'", "9**(9**8)", "10**", "(", ")", "*", "'x'", "|length", "|center(10**9)", "~", "+",
         "in", "[1, 2]", "metrics.nope", "unknown", "\udcff", "{{", "}}", "1" * 5000]  # fmt: skip
    )
    | st.text(max_size=6),
    min_size=1,
    max_size=12,
).map(" ".join)


def _value(children: Any) -> Any:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6), children, max_size=4),
    )


VALUES = st.recursive(SCALARS, _value, max_leaves=20)


@st.composite
def steps(draw: st.DrawFn, depth: int = 0) -> Any:
    kind = draw(st.sampled_from(["wait", "send", "wait_for", "branch", "split", "repeat", "exit", "junk"]))
    inner = st.lists(steps(depth + 1), max_size=2) if depth < 2 else st.just([])
    if kind == "send":
        channel = draw(st.sampled_from(["email", "sms", "fax"]))
        return {"send": {"channel": channel, "template": draw(st.sampled_from(["welcome", "promo", "Welcome!"]))}}
    if kind == "wait":
        return {"wait": draw(st.sampled_from(["3d", "99999999999999999d", "1d2h", "x", "0s"]) | VALUES)}
    if kind == "wait_for":
        return {"wait_for": {"event": "purchase", "when": draw(conditions_text), "timeout": "1d", "then": draw(inner)}}
    if kind == "branch":
        return {"branch": {"if": draw(conditions_text), "then": draw(inner), "else": draw(inner)}}
    if kind == "split":
        arms = [{"name": draw(st.sampled_from(["a", "b"])), "weight": draw(SCALARS), "flow": draw(inner)}]
        return {"split": {"name": "t", "arms": arms, "holdout": draw(SCALARS)}}
    if kind == "repeat":
        return {"repeat": {"flow": draw(inner), "times": draw(SCALARS)}}
    if kind == "exit":
        return "exit"
    return draw(VALUES)


@st.composite
def journeys(draw: st.DrawFn) -> dict[str, Any]:
    journey: dict[str, Any] = {
        "journey": draw(st.just("promo") | st.sampled_from(["Promo", "p" * 200]) | st.text(max_size=5)),
        "name": draw(SCALARS),
        "entry": [{"on": "signed_up", "to": draw(st.sampled_from(["welcome", "other"])), "when": draw(conditions_text)}],
        "stages": {
            "welcome": {
                "flow": draw(st.lists(steps(), min_size=1, max_size=4)),
                "transitions": [{"on": "purchase", "when": draw(conditions_text), "to": "other"}],
            },
            "other": {"flow": draw(st.lists(steps(), max_size=2))},
        },
    }
    for key in draw(st.lists(st.sampled_from(list(journey)), max_size=1)):
        journey[key] = draw(VALUES)  # a field replaced by anything
    if draw(st.booleans()):
        journey[draw(st.sampled_from(WORDS))] = draw(VALUES)
    return journey


def _check(journey_text: str, template: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="cyklo-fuzz-") as folder:
        root = Path(folder)
        (root / "promo.yaml").write_text(journey_text, encoding="utf-8", errors="surrogatepass")
        for locale in ("pl", "en"):
            for channel, parts in (("email", ("subject.txt", "html", "txt")), ("sms", ("txt",))):
                target = root / "templates" / locale / channel
                target.mkdir(parents=True)
                for part in parts:
                    text = template if template is not None and part in ("html", "txt") else "Hi {{ shop.name }}"
                    (target / f"welcome.{part}").write_text(text, encoding="utf-8", errors="surrogatepass")
        started = time.monotonic()
        result = CliRunner().invoke(app, ["validate", str(root / "promo.yaml")])
        took = time.monotonic() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code in (0, 1), result.output
    assert took < EXAMPLE_SECONDS
    if result.exit_code == 1:
        lines = result.output.splitlines()
        assert lines
        for line in lines:
            match = PROBLEM.match(line)
            assert match is not None, f"not `file:line: message`: {line!r}"
            assert int(match["line"]) >= 1
            assert match["file"].startswith(folder), line


@FUZZ
@given(journeys())
def test_random_journeys_are_validated_without_a_crash_each_problem_at_file_and_line(journey: dict[str, Any]) -> None:
    _check(yaml.safe_dump(journey, allow_unicode=True, sort_keys=False))


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            ["journey: promo\n", "stages:\n", "  - ", ": ", "&a ", "*a", "[", "]", "{", "}", ",", "\t", "'", '"', "!!python/object ",
             "<<: *a\n", "---\n", "...\n", "%YAML 1.1\n", "on: ", "when: ", "flow:\n", "    - send: {channel: email}\n",
             "\x00", "\ufeff", "\udcff", "#", "|\n", ">\n", "? ", "1" * 5000]  # fmt: skip
        )
        | st.text(max_size=10),
        max_size=40,
    ).map("".join)
)
def test_raw_yaml_text_is_validated_without_a_crash_each_problem_at_file_and_line(text: str) -> None:
    _check(text)


SENDING_JOURNEY = """\
journey: promo
name: Promo
entry:
  - {on: signed_up, to: welcome}
stages:
  welcome:
    flow:
      - send: {channel: email, template: welcome}
      - send: {channel: sms, template: welcome}
"""


@FUZZ
@given(templates_text)
def test_random_templates_are_validated_in_bounded_time_each_problem_at_file_and_line(template: str) -> None:
    _check(SENDING_JOURNEY, template)
