"""Message templates: where they live, what they may use, how they render.

Layout under `journeys/templates/`:
    {locale}/email/{name}.subject.txt, {name}.html, {name}.txt
    {locale}/sms/{name}.txt
Templates render in Jinja2's sandbox; an undefined variable is an error, never a blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import DictLoader, StrictUndefined, TemplateSyntaxError, meta, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from definition.model import Channel

TEMPLATE_NAMES = frozenset({"customer", "metrics", "event", "discount_code", "shop", "links"})
"""Variables every template may use:
customer      first_name, locale, timezone
metrics       see definition.metrics.Metrics.view
event         type and properties of the event that entered the stage (e.g. the purchase)
discount_code a unique single-use code for this message
shop          name, url, currency
links         unsubscribe, preferences
"""

EMAIL_PARTS = ("subject.txt", "html", "txt")
SMS_PARTS = ("txt",)


def parts(channel: Channel) -> tuple[str, ...]:
    return EMAIL_PARTS if channel == "email" else SMS_PARTS


def relative_path(locale: str, channel: Channel, name: str, part: str) -> str:
    return f"{locale}/{channel}/{name}.{part}"


def read_sources(templates_dir: Path, wanted: set[tuple[str, Channel, str]]) -> dict[str, str]:
    """Every existing source file for the (locale, channel, name) triples, keyed by relative
    path, with the layouts they extend or include (e.g. `pl/email/_layout.html`)."""
    sources = {}
    for locale, channel, name in sorted(wanted):
        for part in parts(channel):
            path = templates_dir / relative_path(locale, channel, name, part)
            if path.is_file():
                sources[relative_path(locale, channel, name, part)] = path.read_text(encoding="utf-8")
    pending = list(sources)
    while pending:
        for referenced in references(sources[pending.pop()]):
            path = templates_dir / referenced
            if referenced not in sources and path.is_file():
                sources[referenced] = path.read_text(encoding="utf-8")
                pending.append(referenced)
    return sources


def references(source: str) -> list[str]:
    """Templates a source extends, includes or imports; empty if it does not parse."""
    try:
        return [name for name in meta.find_referenced_templates(environment({}).parse(source)) if name]
    except TemplateSyntaxError:
        return []


def environment(sources: dict[str, str]) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=DictLoader(sources),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=False,
    )


def render(
    env: ImmutableSandboxedEnvironment, locale: str, channel: Channel, name: str, context: dict[str, Any]
) -> dict[str, str]:
    """Render every part of one message: {'subject.txt': ..., 'html': ..., 'txt': ...}."""
    return {
        part: env.get_template(relative_path(locale, channel, name, part)).render(context).strip()
        for part in parts(channel)
    }
