"""What a message says: its template context and its render, for the send and the preview.

The send activity, `cyklo preview`, `cyklo send-test` and the API's preview page all build
the context with `template_context` and render with `render_message`, so a preview is what a
send would make of the same data. The context's shape is declared once, in
definition/context.py; a preview's data is definition.templates.sample_context, the one
`cyklo validate` renders with, with the shop and links of these settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from definition import templates
from definition.channels import Channel
from definition.context import CustomerView, EventView, LinksView, ShopView, TemplateContext
from definition.preview import MessagePreview, preview_of
from definition.sandbox import BoundedEnvironment
from settings import Settings

PREVIEW_MESSAGE = "preview"
"""Stands for the ledger row's id in a preview's links: a preview has no row."""


def message_locale(wanted: str, locales: Sequence[str]) -> str:
    """The customer's locale if the journey has templates for it, else the journey's first."""
    return wanted if wanted in locales else locales[0]


def customer_view(first_name: str | None, locale: str, timezone: str, locales: Sequence[str]) -> CustomerView:
    """The customer as templates see them, in the locale the message will be written in."""
    return {"first_name": first_name, "locale": message_locale(locale, locales), "timezone": timezone}


def shop_view(settings: Settings) -> ShopView:
    return {"name": settings.shop_name, "url": settings.shop_url, "currency": settings.currency}


def links_view(settings: Settings, message_id: int | str) -> LinksView:
    return {
        "unsubscribe": f"{settings.shop_url}/unsubscribe?m={message_id}",
        "preferences": f"{settings.shop_url}/preferences",
    }


def template_context(
    customer: CustomerView,
    metrics: Mapping[str, Any],
    event: EventView,
    discount_code: str,
    links: LinksView,
    settings: Settings,
) -> TemplateContext:
    return {
        "customer": customer,
        "metrics": dict(metrics),
        "event": event,
        "discount_code": discount_code,
        "shop": shop_view(settings),
        "links": links,
    }


def sample_context(
    settings: Settings,
    locales: Sequence[str],
    customer: CustomerView | None = None,
    event: EventView | None = None,
    locale: str | None = None,
    links: LinksView | None = None,
) -> TemplateContext:
    """The sample a preview renders with (a returning customer who just bought), its customer
    and event replaced by those given and its locale by `locale`, falling back as a send does."""
    sample = templates.sample_context()
    who = customer or sample["customer"]
    return template_context(
        customer_view(who["first_name"], locale or who["locale"], who["timezone"], locales),
        sample["metrics"],
        event or sample["event"],
        sample["discount_code"],
        links or links_view(settings, PREVIEW_MESSAGE),
        settings,
    )


def render_message(
    environment: BoundedEnvironment,
    channel: Channel,
    template: str,
    context: TemplateContext,
    settings: Settings,
) -> dict[str, str]:
    """Every part of the message, in the context's locale (definition.templates.render, whose
    errors it raises)."""
    return templates.render(
        environment,
        context["customer"]["locale"],
        channel,
        template,
        context,
        seconds=settings.render_seconds,
    )


def preview_message(
    environment: BoundedEnvironment,
    channel: Channel,
    template: str,
    context: TemplateContext,
    settings: Settings,
) -> MessagePreview:
    return preview_of(channel, render_message(environment, channel, template, context, settings))
