"""CLI verbs for the platform and support, through the HTTP API (`CYKLO_API_URL`, `CYKLO_API_KEY`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from client.platform import Cyklo
from workflows.interface import SupportKind

customer_app = typer.Typer(help="Customer profiles.", no_args_is_help=True)


def _client() -> Cyklo:
    url = os.environ.get("CYKLO_API_URL", "http://127.0.0.1:8000")
    key = os.environ.get("CYKLO_API_KEY")
    dev_key = Path(".cyklo/dev-api-key")
    if not key and dev_key.exists():
        key = dev_key.read_text().strip()  # what `cyklo dev` made for this folder
    if not key:
        raise typer.BadParameter("set CYKLO_API_KEY (or run `cyklo dev` here, which makes a development key)")
    return Cyklo(url, key)


def put_customer(
    customer_id: str,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    first_name: Annotated[str | None, typer.Option()] = None,
    locale: Annotated[str, typer.Option()] = "pl",
    timezone: Annotated[str, typer.Option()] = "Europe/Warsaw",
    email_consent: Annotated[bool, typer.Option("--email-consent/--no-email-consent")] = False,
    sms_consent: Annotated[bool, typer.Option("--sms-consent/--no-sms-consent")] = False,
    source: Annotated[str, typer.Option(help="Where consent was given.")] = "cli",
) -> None:
    """Create or replace a customer's profile."""
    with _client() as cyklo:
        cyklo.identify(
            customer_id,
            email=email,
            phone=phone,
            first_name=first_name,
            locale=locale,
            timezone=timezone,
            consents={"email": email_consent, "sms": sms_consent, "source": source},
        )
    typer.echo(f"saved {customer_id}")


def event(
    event_type: Annotated[str, typer.Argument(help="e.g. signed_up, purchase, cart_abandoned")],
    customer_id: str,
    prop: Annotated[
        list[str] | None, typer.Option("--prop", help="key=value (numbers become numbers)")
    ] = None,
    event_id: Annotated[str | None, typer.Option("--id", help="Give one so a retry counts once.")] = None,
) -> None:
    """Send one event for a customer."""
    properties: dict[str, Any] = {}
    for item in prop or []:
        key, separator, value = item.partition("=")
        if not separator:
            raise typer.BadParameter(f"--prop {item!r}: use key=value")
        properties[key] = _number_or_text(value)
    with _client() as cyklo:
        result = cyklo.track(customer_id, event_type, properties, event_id=event_id)
    outcome = result["results"][0]
    errors = "; ".join(f"{error['field']}: {error['message']}" for error in outcome.get("errors", []))
    typer.echo(f"{outcome['event_id']}: {outcome['status']}{' — ' + errors if errors else ''}")
    if outcome["status"] == "rejected":
        raise typer.Exit(1)


def inspect(customer_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Why did (or didn't) this customer get that message: stage, step, next wake-up, history."""
    with _client() as cyklo:
        record = cyklo.customer(customer_id)
    typer.echo(json.dumps(record, indent=2, ensure_ascii=False) if as_json else report(record))


def act(
    action: SupportKind,
    customer_id: str,
    journey: Annotated[str, typer.Option(help="Journey id.")] = "lifecycle",
    stage: Annotated[str | None, typer.Option(help="For move_to.")] = None,
    reason: Annotated[str, typer.Option()] = "",
    by: Annotated[str | None, typer.Option(help="Who acts (default: the API key).")] = None,
) -> None:
    """Steer one customer's journey: pause, resume, skip_wait, move_to --stage S, exit, upgrade
    (to the newest published version, now)."""
    with _client() as cyklo:
        view = cyklo.act(customer_id, journey, action.value, stage=stage, reason=reason, by=by)
    typer.echo(
        f"{action.value}: {journey} v{view['version']} is in stage {view['stage']}; next: {view['next_wake_reason'] or '-'}"
    )


def report(record: dict[str, Any]) -> str:
    profile = record["profile"]
    lines = [
        f"customer {profile['id']}  locale {profile['locale']}  zone {profile['timezone']}",
        f"  consents: email {'yes' if profile['consent_email'] else 'no'}, sms {'yes' if profile['consent_sms'] else 'no'}"
        + (" (email suppressed)" if profile["email_suppressed"] else "")
        + (" (sms suppressed)" if profile["sms_suppressed"] else ""),
    ]
    for journey_id, view in record["journeys"].items():
        lines.append(
            f"journey {journey_id} v{view['version']}: stage {view['stage']}, step {view['step'] or '-'}"
            + (f", paused by {view['paused']['by']}" if view.get("paused") else "")
            + (f", ended: {view['exited']}" if view.get("exited") else "")
        )
        lines.append(f"  next wake-up {view['next_wake_at'] or '-'}: {view['next_wake_reason'] or '-'}")
    lines.append("messages (newest first):")
    for message in record["messages"]:
        why = f" — {message['reason']}" if message.get("reason") else ""
        lines.append(
            f"  {message['scheduled_at'][:16]}  {message['journey_id']:<15} {message['channel']:<5} "
            f"{message['template']:<22} {message['status']}{why}"
        )
    lines.append("events (newest first):")
    for item in record["events"]:
        lines.append(f"  {item['occurred_at'][:16]}  {item['type']:<16} {item['event_id']}")
    return "\n".join(lines)


def _number_or_text(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value
