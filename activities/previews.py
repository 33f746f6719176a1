"""Which message of which journey a preview or a test send is about, and every message of a
journey previewed per locale (the API's preview page). The render is activities.rendering's,
the one the send activity uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from activities.rendering import preview_message, sample_context
from definition.channels import Channel
from definition.context import CustomerView, EventView
from definition.model import Journey, SendSpec
from definition.preview import MessagePreview
from definition.problems import ProblemsForPeople, suggest
from definition.sandbox import BoundedEnvironment
from definition.templates import TEMPLATE_ERROR
from settings import Settings


class PreviewRefused(ProblemsForPeople):
    """The command's arguments do not name one message: what to give instead."""


class TemplateFailed(ProblemsForPeople):
    """The template raised while rendering, as it would have at send time."""


@dataclass(frozen=True)
class JourneyMessage:
    """One message a journey sends: a template in a channel, at a stage."""

    stage: str
    send: SendSpec


@dataclass(frozen=True)
class LocalePreview:
    locale: str
    preview: MessagePreview | None
    problem: str | None
    """The template error, when it does not render."""


def messages(journey: Journey) -> list[JourneyMessage]:
    """Each (channel, template) the journey sends, once, where it is first sent."""
    seen: dict[tuple[Channel, str], JourneyMessage] = {}
    for stage, send in journey.sends():
        seen.setdefault((send.channel, send.template), JourneyMessage(stage, send))
    return list(seen.values())


def choose_journey(journeys: Sequence[Journey], template: str, journey_id: str | None) -> Journey:
    """The journey named, or the only one that sends `template`."""
    if journey_id is not None:
        for journey in journeys:
            if journey.journey == journey_id:
                return journey
        ids = [journey.journey for journey in journeys]
        raise PreviewRefused(
            f"no journey {journey_id!r}{suggest(journey_id, ids)} (journeys: {', '.join(ids)})"
        )
    sending = [journey for journey in journeys if any(m.send.template == template for m in messages(journey))]
    if len(sending) == 1:
        return sending[0]
    if not sending:
        names = {m.send.template for journey in journeys for m in messages(journey)}
        raise PreviewRefused(f"no journey sends a template {template!r}{suggest(template, names)}")
    senders = ", ".join(journey.journey for journey in sending)
    raise PreviewRefused(f"{template!r} is sent by the journeys {senders}: choose one with --journey")


def choose_message(journey: Journey, template: str, channel: Channel | None) -> JourneyMessage:
    """The journey's send of `template` in `channel`, or in its only channel."""
    found = [m for m in messages(journey) if m.send.template == template]
    if not found:
        names = {m.send.template for m in messages(journey)}
        raise PreviewRefused(
            f"journey {journey.journey!r} sends no template {template!r}{suggest(template, names)}"
        )
    in_channel = [m for m in found if channel is None or m.send.channel == channel]
    if len(in_channel) == 1:
        return in_channel[0]
    channels = ", ".join(m.send.channel for m in found)
    if not in_channel:
        raise PreviewRefused(f"journey {journey.journey!r} sends {template!r} only by {channels}")
    raise PreviewRefused(
        f"journey {journey.journey!r} sends {template!r} by {channels}: choose one with --channel"
    )


def preview(
    environment: BoundedEnvironment,
    journey: Journey,
    message: JourneyMessage,
    settings: Settings,
    customer: CustomerView | None = None,
    event: EventView | None = None,
    locale: str | None = None,
) -> tuple[str, MessagePreview]:
    """(the locale it is written in, the message as the customer would get it);
    TemplateFailed if its template fails."""
    context = sample_context(settings, journey.locales, customer, event, locale)
    try:
        return context["customer"]["locale"], preview_message(
            environment, message.send.channel, message.send.template, context, settings
        )
    except Exception as problem:  # the template's own error at render time, whatever it is
        raise TemplateFailed(
            f"{journey.journey} {message.send.channel} {message.send.template}: "
            f"{TEMPLATE_ERROR}: {type(problem).__name__}: {problem}"
        ) from None


def journey_previews(
    environment: BoundedEnvironment, journey: Journey, settings: Settings
) -> list[tuple[JourneyMessage, list[LocalePreview]]]:
    """Every message of the journey in each of its locales, with the sample data."""
    found = []
    for message in messages(journey):
        locales = []
        for locale in journey.locales:
            try:
                _, shown = preview(environment, journey, message, settings, locale=locale)
                locales.append(LocalePreview(locale, shown, None))
            except TemplateFailed as failed:
                locales.append(LocalePreview(locale, None, str(failed)))
        found.append((message, locales))
    return found
