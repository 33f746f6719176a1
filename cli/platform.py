"""CLI verbs for the platform and support, through the HTTP API (`CYKLO_API_URL`, `CYKLO_API_KEY`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import json_text
from client.platform import Cyklo, CykloError, CykloUnreachable
from definition.problems import ProblemsForPeople
from workflows.interface import SupportKind

customer_app = typer.Typer(help="Customer profiles.", no_args_is_help=True)


class ApiProblem(ProblemsForPeople):
    """What the API said, or that none answered, in words: printed as it is, exit 1."""


@contextmanager
def _client() -> Iterator[Cyklo]:
    url = os.environ.get("CYKLO_API_URL", "http://127.0.0.1:8000")
    key = os.environ.get("CYKLO_API_KEY")
    dev_key = Path(".cyklo/dev-api-key")
    if not key and dev_key.exists():
        key = dev_key.read_text().strip()  # what `cyklo dev` made for this folder
    if not key:
        raise typer.BadParameter("set CYKLO_API_KEY (or run `cyklo dev` here, which makes a development key)")
    try:
        with Cyklo(url, key) as cyklo:
            yield cyklo
    except CykloUnreachable as missing:
        if missing.listening:
            raise ApiProblem(
                f"the cyklo API at {missing.url} did not answer in time: it may be overloaded; try again"
            ) from None
        raise ApiProblem(
            f"no cyklo API at {missing.url} — start it with ./run (or point CYKLO_API_URL at one)"
        ) from None
    except CykloError as refused:
        raise ApiProblem(str(refused)) from None


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
    typer.echo(f"saved {customer_id}: {consent_words(email_consent, sms_consent, source)}")


def consent_words(email: bool, sms: bool, source: str) -> str:
    """What consent a saved profile records, so nobody is surprised by suppressed messages."""
    given = [channel for channel, yes in (("email", email), ("SMS", sms)) if yes]
    if not given:
        return (
            "no consent recorded (marketing email and SMS will be suppressed; "
            "give it with --email-consent / --sms-consent)"
        )
    refused = [channel for channel, yes in (("email", email), ("SMS", sms)) if not yes]
    return f"consent to {' and '.join(given)} recorded (source {source})" + (
        f"; none for {refused[0]}" if refused else ""
    )


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
    typer.echo(f"{outcome['event_id']}: {outcome['status']}")
    for error in outcome.get("errors", []):
        typer.echo(f"  {error['field']}: {error['message']}")
    if outcome.get("warning"):
        typer.echo(f"  warning: {outcome['warning']}")
    if outcome["status"] in ("rejected", "failed"):
        raise typer.Exit(1)


def inspect(customer_id: str, json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Why did (or didn't) this customer get that message: stage, step, next wake-up, history."""
    with _client() as cyklo:
        record = cyklo.customer(customer_id)
    typer.echo(json_text(record) if json_output else report(customer_id, record))


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
    if action.needs_stage and not stage:
        stages = stages_of(journey)
        where = f"one of {', '.join(stages)}" if stages else "the stage to move the customer to"
        raise typer.BadParameter(f"none given: {action.value} needs {where}", param_hint="--stage")
    with _client() as cyklo:
        view = cyklo.act(customer_id, journey, action.value, stage=stage, reason=reason, by=by)
    typer.echo(
        f"{action.value}: {journey} v{view['version']} is in stage {view['stage']}; next: {view['next_wake_reason'] or '-'}"
    )


def stages_of(journey_id: str) -> list[str]:
    """The journey's stages: of its newest published version in the database, else of its file
    in the journeys folder; empty when neither knows it."""
    # Imported here: every other verb of the command line starts without the database layer.
    from sqlalchemy.engine import make_url

    from definition.loader import load_journeys
    from definition.model import Journey
    from settings import get_settings
    from storage import journey_versions
    from storage.database import session_for

    settings = get_settings()
    url = make_url(settings.database_url)
    # Opening a SQLite file that is not there would leave an empty database behind.
    absent = url.get_backend_name() == "sqlite" and not Path(url.database or "").exists()
    try:
        if absent:
            raise LookupError(settings.database_url)
        with session_for(settings.database_url, read_only=True) as session:
            definition = journey_versions.get(session, journey_id).definition
        return list(Journey.model_validate_json(definition).stages)
    except Exception:  # no database here, or the journey is not published: the files may know
        loaded, _ = load_journeys([settings.journeys_dir])
        return next(
            (list(item.definition.stages) for item in loaded if item.definition.journey == journey_id), []
        )


def report(customer_id: str, record: dict[str, Any]) -> str:
    profile = record["profile"]
    if profile is None:
        lines = [f"customer {customer_id}: no profile yet (messages are suppressed until one is saved)"]
    else:
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
