"""A sent message shown again on the support page: rendered from the frozen journey version it
was sent from, with its own discount code and links.

The ledger keeps no body (README Decisions: the text holds the customer's name), so the page
renders the version's template again: with the customer's profile and the journey's metrics
as they are now, and the event that entered the stage (the send's own context is not kept
anywhere). The page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from activities.rendering import customer_view, links_view, preview_message, template_context
from api.models import CustomerRecord, MessageEntry
from definition import templates
from definition.channels import Channel
from definition.context import EventView
from definition.model import Journey
from definition.preview import MessagePreview
from settings import Settings
from storage import journey_versions


@dataclass(frozen=True)
class SentMessage:
    entry: MessageEntry
    preview: MessagePreview | None
    problem: str | None
    """Why it could not be rendered again (a test send's unpublished files, a template error)."""


def sent_message(settings: Settings, record: CustomerRecord, message_id: int) -> SentMessage | None:
    """The message of this customer with this ledger id, rendered again; None if they have none."""
    entry = next((message for message in record.messages if message.id == message_id), None)
    if entry is None:
        return None
    if entry.test:
        return SentMessage(entry, None, "a test send, rendered from the journey files of the time: not kept")
    try:
        published = journey_versions.published(settings.database_url, entry.journey_id, entry.journey_version)
    except journey_versions.JourneyNotPublished as missing:
        return SentMessage(entry, None, str(missing))
    journey = Journey.model_validate_json(published.definition)
    sample = templates.sample_context()
    profile = record.profile
    customer = (
        customer_view(profile.first_name, profile.locale, profile.timezone, journey.locales)
        if profile is not None
        else sample["customer"]
    )
    view = record.journeys.get(entry.journey_id)
    context = template_context(
        customer,
        view.metrics if view is not None else sample["metrics"],
        _stage_event(record, entry) or sample["event"],
        entry.discount_code or "",
        links_view(settings, entry.id),
        settings,
    )
    try:
        shown = preview_message(
            templates.environment(published.templates),
            Channel(entry.channel),
            entry.template,
            context,
            settings,
        )
    except Exception as problem:  # the template's own error, as a send would have met it
        return SentMessage(entry, None, f"could not be rendered again: {problem}")
    return SentMessage(entry, shown, None)


def _stage_event(record: CustomerRecord, entry: MessageEntry) -> EventView | None:
    """The newest event that entered a stage of this journey before the message was due."""
    view = record.journeys.get(entry.journey_id)
    entering = [
        event
        for event in (view.recent_events if view is not None else [])
        if event.effect.startswith(("entered", "moved to"))
        and event.at <= _aware(entry.scheduled_at, event.at)
    ]
    if not entering:
        return None
    newest = max(entering, key=lambda event: event.at)
    return cast(EventView, {"type": newest.type, "properties": newest.properties})


def _aware(moment: datetime, like: datetime) -> datetime:
    # SQLite gives the ledger's times back without their zone (stored as UTC).
    return moment.replace(tzinfo=like.tzinfo) if moment.tzinfo is None and like.tzinfo is not None else moment
