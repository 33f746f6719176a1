"""`cyklo send-test`: one message to your own inbox or phone, through the real provider."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.preview import (
    CHANNEL_HELP,
    EVENT_HELP,
    JOURNEY_HELP,
    JOURNEYS_HELP,
    LOCALE_HELP,
    TEMPLATE_HELP,
    choose,
)
from definition.channels import Channel

TO_HELP = "Your email address or phone number (601 234 567 is read in CYKLO_DEFAULT_PHONE_REGION)."
CUSTOMER_HELP = (
    "YAML with first_name, locale, timezone to render for, and the id of the customer the "
    "test is recorded for (default: a sample customer)."
)
DEV_HELP = "Send through the emulator and into the database of `cyklo dev` (its --data and --emulator-port)."


def send_test(
    template: Annotated[str, typer.Argument(help=TEMPLATE_HELP)],
    to: Annotated[str, typer.Option("--to", help=TO_HELP)],
    journey: Annotated[str | None, typer.Option("--journey", help=JOURNEY_HELP)] = None,
    locale: Annotated[str | None, typer.Option("--locale", help=LOCALE_HELP)] = None,
    channel: Annotated[
        Channel | None, typer.Option("--channel", help=f"{CHANNEL_HELP} Default: email if --to has an @.")
    ] = None,
    customer: Annotated[Path | None, typer.Option("--customer", help=CUSTOMER_HELP)] = None,
    event: Annotated[Path | None, typer.Option("--event", help=EVENT_HELP)] = None,
    journeys: Annotated[list[Path] | None, typer.Option("--journeys", help=JOURNEYS_HELP)] = None,
    dev: Annotated[bool, typer.Option("--dev", help=DEV_HELP)] = False,
    data: Annotated[Path, typer.Option(help="With --dev: the data folder of `cyklo dev`.")] = Path(".cyklo"),
    emulator_port: Annotated[int, typer.Option(help="With --dev: the emulator's port.")] = 8025,
) -> None:
    """Send one message, rendered as `cyklo preview` shows it, to ADDRESS or PHONE through the
    real SendGrid or Twilio path (configured as for the worker, or the emulator with --dev).
    The ledger records it as a test: never counted by the frequency cap or in reports."""
    from activities.samples import SAMPLE_CUSTOMER_ID, load_customer, load_event
    from activities.send_test import SendTestFailed, channel_for
    from activities.send_test import send_test as send
    from cli.dev import dev_database
    from stack.local import with_emulator

    chosen = choose(template, journey, channel or channel_for(to), journeys)
    settings = chosen.settings
    if dev:
        settings = with_emulator(dev_database(settings, data), f"http://127.0.0.1:{emulator_port}")
    customer_id, who = load_customer(customer) if customer else (SAMPLE_CUSTOMER_ID, None)
    try:
        sent = send(
            settings,
            chosen.environment,
            chosen.journey,
            chosen.message,
            to,
            customer_id,
            who,
            load_event(event) if event else None,
            locale,
        )
    except SendTestFailed as failed:
        hint = (
            "is `cyklo dev` running, with this --emulator-port?"
            if dev
            else "with `cyklo dev` running, add --dev"
        )
        raise SendTestFailed(f"{failed}\n{hint}") from None
    typer.echo(
        f"sent {chosen.message.send.channel} {template} ({sent.locale}) of {chosen.journey.journey} to {to}: "
        f"provider message id {sent.provider_message_id or '(none given)'}, ledger message {sent.message_id} (test)"
    )
