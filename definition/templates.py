"""Message templates: where they live, what they may use, how they render.

Layout under `journeys/templates/`:
    {locale}/email/{name}.subject.txt, {name}.html, {name}.txt
    {locale}/sms/{name}.txt
    {locale}/webhook/{name}.json   (its output must be JSON: use `| tojson` for values)
Templates render in the bounded sandbox (definition.sandbox); an undefined variable is an
error, never a blank. A render spends from a work budget and has a deadline, and each part
stops at MAX_OUTPUT characters: past any of them the message is a template error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, assert_never

from jinja2 import BaseLoader, DictLoader, StrictUndefined, Template, select_autoescape

from definition.channels import Channel
from definition.context import TemplateContext, names
from definition.sandbox import MAX_VALUE, BoundedEnvironment, LimitExceeded, spending, template_budget

TEMPLATE_NAMES = names(TemplateContext)
"""Variables every template may use: definition.context.TemplateContext says what each holds."""

TEMPLATE_ERROR = "template error"
"""How the reason of a message that failed to render begins (activities.send)."""

EMAIL_PARTS = ("subject.txt", "html", "txt")
SMS_PARTS = ("txt",)
WEBHOOK_PARTS = ("json",)

RENDER_SECONDS = 2.0
"""The default time budget of one message (all its parts): CYKLO_RENDER_SECONDS."""
RENDER_WORK = 3_000_000
"""Operations (and characters they make) one message may spend; deterministic, unlike time.
`cyklo validate` stops a sample render by this (with a generous deadline as a safety net), so
its verdict does not depend on how busy the machine is."""
VALIDATE_SECONDS = 3 * RENDER_SECONDS
MAX_OUTPUT = MAX_VALUE
"""Characters of one rendered part; the channels' own caps are narrower (activities)."""
MAX_SOURCE = 100_000
"""Characters of one template file: about what Gmail shows before it clips a message."""


def parts(channel: Channel) -> tuple[str, ...]:
    match channel:
        case Channel.EMAIL:
            return EMAIL_PARTS
        case Channel.SMS:
            return SMS_PARTS
        case Channel.WEBHOOK:
            return WEBHOOK_PARTS
        case _:
            assert_never(channel)


class OutputNotJson(ValueError):
    """A webhook template rendered something that is not one JSON document."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"webhook body is not JSON: {problem} (line {line} of the output)")
        self.line = line


def output_problem(relative: str, output: str) -> OutputNotJson | None:
    """Why the rendered part `relative` cannot go out in its channel's format; None if it can.
    `cyklo validate` reports it at the line of the sample render, the send as a template error."""
    if not relative.endswith(".json"):
        return None
    try:
        json.loads(output)
    except json.JSONDecodeError as error:
        return OutputNotJson(error.lineno, error.msg)
    except RecursionError:
        return OutputNotJson(1, "nested too deeply")
    return None


def relative_path(locale: str, channel: Channel, name: str, part: str) -> str:
    return f"{locale}/{channel}/{name}.{part}"


def environment(sources: dict[str, str], loader: BaseLoader | None = None) -> BoundedEnvironment:
    return BoundedEnvironment(
        loader=loader or DictLoader(sources),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=False,
    )


def render(
    env: BoundedEnvironment,
    locale: str,
    channel: Channel,
    name: str,
    context: Mapping[str, Any],
    seconds: float = RENDER_SECONDS,
) -> dict[str, str]:
    """Render every part of one message: {'subject.txt': ..., 'html': ..., 'txt': ...}.

    Raises LimitExceeded when the message takes more than `seconds`, RENDER_WORK or
    MAX_OUTPUT characters in a part, OutputNotJson for a webhook body that is not JSON; any
    other exception is the template's own error."""
    # Compiled first, outside the deadline: compiling happens once per published version,
    # and a slow moment of the machine must not make a good template an error.
    compiled = {part: env.get_template(relative_path(locale, channel, name, part)) for part in parts(channel)}
    with spending(template_budget(RENDER_WORK, seconds)):
        rendered = {part: render_part(env, template, context).strip() for part, template in compiled.items()}
    for part, output in rendered.items():
        problem = output_problem(relative_path(locale, channel, name, part), output)
        if problem is not None:
            raise problem
    return rendered


def render_part(env: BoundedEnvironment, template: str | Template, context: Mapping[str, Any]) -> str:
    """One template, its output counted chunk by chunk; inside `spending(...)`."""
    made: list[str] = []
    size = 0
    if isinstance(template, str):
        template = env.get_template(template)
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise LimitExceeded(f"{template.name} makes more than {MAX_OUTPUT:,} characters")
        made.append(chunk)
    return "".join(made)


def sample_context() -> TemplateContext:
    """What `cyklo validate` renders every message with: a returning customer who just bought."""
    from definition.conditions import sample_context as condition_sample

    sample = condition_sample()
    return {
        "customer": {"first_name": "Ala", "locale": "pl", "timezone": "Europe/Warsaw"},
        "metrics": sample["metrics"],
        "event": sample["event"],
        "discount_code": "CYK-0A1B2C3D",
        "shop": {"name": "cyklo shop", "url": "https://shop.example.com", "currency": "PLN"},
        "links": {
            "unsubscribe": "https://shop.example.com/unsubscribe?m=1",
            "preferences": "https://shop.example.com/preferences",
        },
    }
