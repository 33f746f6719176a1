"""Message templates: where they live, what they may use, how they render.

Layout under `journeys/templates/`:
    {locale}/email/{name}.subject.txt, {name}.html, {name}.txt
    {locale}/sms/{name}.txt
Templates render in Jinja2's sandbox; an undefined variable is an error, never a blank.
"""

from __future__ import annotations

from typing import Any

from jinja2 import DictLoader, StrictUndefined, select_autoescape
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
