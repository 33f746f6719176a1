"""`cyklo preview`: a message as the customer would get it, from the journey files, before
anything is published or sent."""

from __future__ import annotations

import tempfile
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from activities.previews import JourneyMessage, choose_journey, choose_message
from activities.previews import preview as render_preview
from activities.samples import load_customer, load_event
from cli.output import json_text
from definition import templates
from definition.channels import Channel
from definition.context import CustomerView, EventView
from definition.loader import load_journeys_or_raise
from definition.model import Journey
from definition.preview import MessagePreview
from definition.sandbox import BoundedEnvironment
from settings import Settings, get_settings

TEMPLATE_HELP = "The template, as the journey's send step names it (welcome, thank_you, …)."
JOURNEY_HELP = "The journey sending it (default: the only one that does)."
LOCALE_HELP = (
    "pl or en (default: the customer's; pl in the sample). A locale the journey has no "
    "templates for falls back to its first, as a send does."
)
CHANNEL_HELP = "email, sms or webhook (default: the only channel the journey sends the template by)."
CUSTOMER_HELP = "YAML with first_name, locale, timezone: the customer to render for (default: a sample)."
EVENT_HELP = "YAML with type and properties: the event of the stage (default: a sample purchase)."
JOURNEYS_HELP = "Journey files or folder to read (default: the journeys folder, CYKLO_JOURNEYS_DIR)."


def preview(
    template: Annotated[str, typer.Argument(help=TEMPLATE_HELP)],
    journey: Annotated[str | None, typer.Option("--journey", help=JOURNEY_HELP)] = None,
    locale: Annotated[str | None, typer.Option("--locale", help=LOCALE_HELP)] = None,
    channel: Annotated[Channel | None, typer.Option("--channel", help=CHANNEL_HELP)] = None,
    customer: Annotated[Path | None, typer.Option("--customer", help=CUSTOMER_HELP)] = None,
    event: Annotated[Path | None, typer.Option("--event", help=EVENT_HELP)] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {subject, text, html, encoding, segments} as JSON.")
    ] = False,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the email's HTML in a browser.")] = False,
    journeys: Annotated[list[Path] | None, typer.Option("--journeys", help=JOURNEYS_HELP)] = None,
) -> None:
    """Render one message with realistic sample data, by the same code as a real send: an
    email's subject, text and HTML (written to a file whose path is printed), an SMS's text,
    encoding (GSM-7 or UCS-2) and segments."""
    chosen = choose(template, journey, channel, journeys)
    who = load_customer(customer)[1] if customer else None
    used, shown = chosen.render(who, load_event(event) if event else None, locale)
    html_file = None
    if shown.html is not None and (open_browser or not as_json):
        html_file = write_html(chosen.journey.journey, template, used, shown.html)
    if as_json:
        typer.echo(json_text(shown))
    else:
        wanted = locale or (who["locale"] if who else None)
        if wanted and wanted != used:
            typer.echo(
                f"journey {chosen.journey.journey} has no {wanted!r} templates: shown in {used!r}, as sent"
            )
        typer.echo(as_text(chosen, used, shown, html_file))
    if open_browser and html_file is not None:
        webbrowser.open(html_file.as_uri())


@dataclass(frozen=True)
class Chosen:
    """The message the arguments name, with what renders it."""

    settings: Settings
    journey: Journey
    message: JourneyMessage
    environment: BoundedEnvironment

    def render(
        self, customer: CustomerView | None, event: EventView | None, locale: str | None
    ) -> tuple[str, MessagePreview]:
        return render_preview(
            self.environment, self.journey, self.message, self.settings, customer, event, locale
        )


def choose(template: str, journey: str | None, channel: Channel | None, paths: list[Path] | None) -> Chosen:
    """The journey files' send of `template`, as --journey and --channel narrow it."""
    settings = get_settings()
    # Problems raise JourneyProblems: the command guard prints one line each and exits 1.
    loaded = load_journeys_or_raise(paths or [settings.journeys_dir])
    definition = choose_journey([item.definition for item in loaded], template, journey)
    files = next(item for item in loaded if item.definition is definition)
    message = choose_message(definition, template, channel)
    return Chosen(settings, definition, message, templates.environment(files.templates))


def as_text(chosen: Chosen, locale: str, shown: MessagePreview, html_file: Path | None) -> str:
    send = chosen.message.send
    lines = [f"{chosen.journey.journey} / {chosen.message.stage}: {send.channel} {send.template} ({locale})"]
    if shown.subject is not None:
        lines.append(f"Subject: {shown.subject}")
    lines += ["", shown.text, ""]
    if shown.encoding is not None:
        plural = "segment" if shown.segments == 1 else "segments"
        lines.append(f"{len(shown.text)} characters, {shown.encoding}, {shown.segments} {plural}")
    if html_file is not None:
        lines.append(f"HTML: {html_file}")
    return "\n".join(lines)


def write_html(journey: str, template: str, locale: str, html: str) -> Path:
    """The same path each time for the same message, so a browser tab can simply reload it."""
    folder = Path(tempfile.gettempdir()) / "cyklo-preview"
    folder.mkdir(exist_ok=True)
    path = folder / f"{journey}.{template}.{locale}.html"
    path.write_text(html, encoding="utf-8")
    return path
