"""The support page: one customer's profile, journeys with a stage diagram, timeline, actions;
and the preview page: every message of a journey, per locale, as the customer would see it.

Server-rendered (Jinja2), so it works without JavaScript; actions are forms that run the
same workflow updates as the API and come back to the page with the outcome.

A person signs in once with a key (api/sessions.py): no key is ever part of a URL, every form
carries a CSRF token, and every answer tells the browser to keep the page out of caches,
frames and Referer headers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from activities.previews import JourneyMessage, LocalePreview, journey_previews
from api.auth import KEY_IN_URL_REFUSED, has_key_in_url
from api.bounded_json import BoundedJsonRoute
from api.dependencies import ClientDep, JourneysDep, SessionsDep, SettingsDep, settings_of
from api.models import CustomerRecord
from api.records import customer_record
from api.report_charts import report_charts
from api.reports_lifecycle import lifecycle_of
from api.sent_message import sent_message
from api.sessions import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SupportSession,
    SupportSessions,
    csrf_matches,
)
from api.support import ActionRequest, run_action
from definition import templates
from definition.conditions import in_words
from definition.durations import format_duration
from definition.model import Journey
from definition.words import flow_in_words
from reports.funnel import Period
from reports.lifecycle import Granularity, PeriodProblem
from reports.lifecycle import period as lifecycle_period
from settings import Settings
from storage import journey_versions
from storage.database import session_for
from storage.models import utcnow
from workflows.interface import JourneyView, SupportKind

SIGN_IN_PATH = "/support/login"
PREVIEW_PATH = "/support/preview"
REPORTS_PATH = "/support/reports"
"""Under /support, where the session cookie goes: `/reports` leads here."""
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
PREVIEW_POLICY = (
    # The emails' images as a customer's mail client loads them; srcdoc frames inherit this,
    # so the emails' own scripts, styles from elsewhere and forms stay blocked.
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
FORGED_FORM = (
    "This form is out of date or did not come from this site, so nothing was done: "
    "reload the page and submit it again (the page needs cookies)."
)
# A path of this site under /support (or /support/preview), its last segment percent-encoded
# as customer_path and preview_path make it: nothing that could lead elsewhere (`//host`, `\`,
# a scheme) or smuggle a query or fragment.
_RETURN_PATH = re.compile(r"/support(?:/preview)?(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+)?")
# (`/support/reports` is of that shape too: a customer whose id is `reports` has no page.)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "pages"), autoescape=select_autoescape(["html"])
)


class SignInRequired(Exception):
    def __init__(self, return_to: str) -> None:
        self.return_to = return_to


class SupportPageRoute(BoundedJsonRoute):
    """Every answer of the support page is an HTML page carrying SECURITY_HEADERS, refusals too."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            response: Response
            if has_key_in_url(request):
                response = _message_page(
                    status.HTTP_401_UNAUTHORIZED, "Keys in URLs are refused", KEY_IN_URL_REFUSED, sign_in=True
                )
            else:
                try:
                    response = await handler(request)
                except SignInRequired as needed:
                    response = RedirectResponse(
                        f"{SIGN_IN_PATH}?next={quote(needed.return_to, safe='/')}",
                        status_code=status.HTTP_303_SEE_OTHER,
                    )
                except HTTPException as refusal:
                    response = _message_page(refusal.status_code, "Refused", str(refusal.detail))
                except RequestValidationError as error:
                    fields = "; ".join(
                        f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
                        for problem in error.errors()
                    )
                    response = _message_page(status.HTTP_422_UNPROCESSABLE_CONTENT, "Bad request", fields)
            for name, value in SECURITY_HEADERS.items():
                # A page may narrow or widen its own policy (the preview page shows images).
                response.headers.setdefault(name, value)
            return response

        return answer


router = APIRouter(tags=["support page"], include_in_schema=False, route_class=SupportPageRoute)


def customer_path(customer_id: str) -> str:
    """The page of one customer; the id is one encoded path segment, whatever it holds."""
    return f"/support/{quote(customer_id, safe='')}"


def _signed_in(request: Request, sessions: SessionsDep) -> SupportSession:
    session = sessions.resume(request.cookies.get(SESSION_COOKIE))
    if session is None:
        customer = request.path_params.get("customer_id")
        journey = request.path_params.get("journey_id")
        if customer:
            raise SignInRequired(customer_path(customer))
        raise SignInRequired(preview_path(journey) if journey else "/support")
    if not session.may("support:read"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this key lacks the scope 'support:read'")
    return session


def preview_path(journey_id: str) -> str:
    return f"{PREVIEW_PATH}/{quote(journey_id, safe='')}"


SignedIn = Annotated[SupportSession, Depends(_signed_in)]
CsrfField = Annotated[str, Form()]


@router.get(SIGN_IN_PATH, response_class=HTMLResponse)
async def sign_in_form(request: Request, sessions: SessionsDep, next: str = "/support") -> Response:
    if sessions.resume(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(_safe_return(next), status_code=status.HTTP_303_SEE_OTHER)
    return _sign_in_page(request, sessions, _safe_return(next))


@router.post(SIGN_IN_PATH)
async def sign_in(
    request: Request,
    sessions: SessionsDep,
    key: Annotated[str, Form()] = "",
    csrf: CsrfField = "",
    next: Annotated[str, Form()] = "/support",
) -> Response:
    _refuse_cross_site(request)
    if not sessions.sign_in_form_matches(request.cookies.get(SIGN_IN_COOKIE), csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, FORGED_FORM)
    return_to = _safe_return(next)
    signed = sessions.sign_in(key.strip())
    if signed is None:
        problem = "That key is not known: check it and try again."
        return _sign_in_page(request, sessions, return_to, problem, status.HTTP_401_UNAUTHORIZED)
    caller, cookie = signed
    if "support:read" not in caller.scopes:
        problem = "That key lacks the scope 'support:read' the support page needs."
        return _sign_in_page(request, sessions, return_to, problem, status.HTTP_403_FORBIDDEN)
    response = RedirectResponse(return_to, status_code=status.HTTP_303_SEE_OTHER)
    lifetime = int(sessions.lifetime.total_seconds())
    _set_cookie(request, response, SESSION_COOKIE, cookie, path=COOKIE_PATH, max_age=lifetime)
    _delete_cookie(request, response, SIGN_IN_COOKIE, path=SIGN_IN_PATH)
    return response


@router.post("/support/logout")
async def sign_out(request: Request, session: SignedIn, csrf: CsrfField = "") -> Response:
    _refuse_forgery(request, session, csrf)
    response = RedirectResponse(SIGN_IN_PATH, status_code=status.HTTP_303_SEE_OTHER)
    _delete_cookie(request, response, SESSION_COOKIE, path=COOKIE_PATH)
    return response


@router.get("/support", response_class=HTMLResponse)
async def find_customer(session: SignedIn, settings: SettingsDep, customer: str = "") -> Response:
    if customer.strip():
        return RedirectResponse(customer_path(customer.strip()), status_code=status.HTTP_303_SEE_OTHER)
    journeys = await asyncio.to_thread(_published_ids, settings)
    previews = [(journey_id, preview_path(journey_id)) for journey_id in journeys]
    return _page("index.html", previews=previews, caller=session.caller.label, csrf=session.csrf_token)


def _may_read_reports(request: Request, sessions: SessionsDep) -> SupportSession:
    session = sessions.resume(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired(REPORTS_PATH)
    if not session.may("reports"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this key lacks the scope 'reports'")
    return session


@router.get("/reports")
async def reports_elsewhere() -> Response:
    return RedirectResponse(REPORTS_PATH, status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get(REPORTS_PATH, response_class=HTMLResponse)
async def reports_page(
    session: Annotated[SupportSession, Depends(_may_read_reports)],
    settings: SettingsDep,
    client: ClientDep,
    since: date | None = None,
    until: date | None = None,
) -> Response:
    """What each journey and step earns, as charts drawn on the server (reports/charts.py)."""
    period = Period.of(since, until)
    try:
        start, end = lifecycle_period(period.since, period.until, utcnow())
    except PeriodProblem as problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{problem.field}: {problem.message}") from None
    lifecycle = await lifecycle_of(settings, client, start, end, Granularity.MONTH)
    sections = await asyncio.to_thread(report_charts, settings, period, lifecycle)
    return _page(
        "reports.html",
        sections=sections,
        since=since,
        until=until,
        caller=session.caller.label,
        csrf=session.csrf_token,
    )


@router.get(PREVIEW_PATH + "/{journey_id}", response_class=HTMLResponse)
async def preview_page(journey_id: str, session: SignedIn, settings: SettingsDep) -> Response:
    """Every message of the journey's newest published version, in each of its locales."""
    try:
        version, journey, messages = await asyncio.to_thread(_previews, settings, journey_id)
    except journey_versions.JourneyNotPublished as missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(missing)) from None
    response = _page(
        "preview.html",
        journey=journey,
        version=version,
        messages=messages,
        caller=session.caller.label,
        csrf=session.csrf_token,
    )
    response.headers["Content-Security-Policy"] = PREVIEW_POLICY
    return response


@router.get("/support/{customer_id}", response_class=HTMLResponse)
async def support_page(
    customer_id: str, session: SignedIn, settings: SettingsDep, journeys: JourneysDep, notice: str = ""
) -> Response:
    record = await customer_record(settings, journeys, customer_id)
    definitions, newest = await asyncio.to_thread(_definitions, settings, record.journeys)
    zone = _zone(record)
    return _page(
        "support.html",
        customer_id=customer_id,
        profile=record.profile,
        zone=zone,
        customer_path=customer_path(customer_id),
        journeys=[
            {
                "id": journey_id,
                "path": quote(journey_id, safe=""),
                "name": definitions[journey_id].name,
                "view": view,
                "next_wake": _Moment(view.next_wake_at, zone) if view.next_wake_at else None,
                "newest": newest[journey_id],
                "stages": _diagram(definitions[journey_id]),
            }
            for journey_id, view in record.journeys.items()
        ],
        actions=[action for action in SupportKind if not action.needs_stage],
        move=SupportKind.MOVE_TO,
        timeline=_timeline(record, zone),
        notice=notice,
        caller=session.caller.label,
        csrf=session.csrf_token,
    )


@router.get("/support/{customer_id}/messages/{message_id}", response_class=HTMLResponse)
async def message_page(
    customer_id: str, message_id: int, session: SignedIn, settings: SettingsDep, journeys: JourneysDep
) -> Response:
    """One message of the customer as it went out: rendered again from the frozen version it was
    sent from, with its discount code."""
    record = await customer_record(settings, journeys, customer_id)
    shown = await asyncio.to_thread(sent_message, settings, record, message_id)
    if shown is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"customer {customer_id!r} has no message {message_id}")
    zone = _zone(record)
    response = _page(
        "sent_message.html",
        customer_id=customer_id,
        customer_path=customer_path(customer_id),
        shown=shown,
        when=_Moment(shown.entry.scheduled_at, zone),
        caller=session.caller.label,
        csrf=session.csrf_token,
    )
    response.headers["Content-Security-Policy"] = PREVIEW_POLICY
    return response


@router.post("/support/{customer_id}/{journey_id}/{action}")
async def support_action(
    customer_id: str,
    journey_id: str,
    action: str,
    request: Request,
    session: SignedIn,
    journeys: JourneysDep,
    csrf: CsrfField = "",
    stage: Annotated[str | None, Form()] = None,
) -> Response:
    _refuse_forgery(request, session, csrf)
    if not session.may("support:write"):
        notice = f"{action.replace('_', ' ')} refused: this key lacks the scope 'support:write'"
    else:
        try:
            await run_action(
                journeys, customer_id, journey_id, action, ActionRequest(stage=stage), session.caller.label
            )
            notice = f"{action.replace('_', ' ')}: done"
        except HTTPException as refusal:
            notice = str(refusal.detail)
    return RedirectResponse(
        f"{customer_path(customer_id)}?notice={quote(notice, safe='')}", status_code=status.HTTP_303_SEE_OTHER
    )


def _published_ids(settings: Settings) -> list[str]:
    with session_for(settings.database_url, read_only=True) as db:
        return journey_versions.published_ids(db)


def _previews(
    settings: Settings, journey_id: str
) -> tuple[int, Journey, list[tuple[JourneyMessage, list[LocalePreview]]]]:
    with session_for(settings.database_url, read_only=True) as db:
        version = journey_versions.newest_version(db, journey_id)
    published = journey_versions.published(settings.database_url, journey_id, version)
    journey = Journey.model_validate_json(published.definition)
    return version, journey, journey_previews(templates.environment(published.templates), journey, settings)


def _definitions(settings: Settings, views: dict[str, JourneyView]) -> tuple[dict[str, Journey], dict[str, int]]:
    """The definition of the version each journey runs, and each journey's newest version."""
    with session_for(settings.database_url) as db:
        definitions = {
            journey_id: Journey.model_validate_json(journey_versions.get(db, journey_id, view.version).definition)
            for journey_id, view in views.items()
        }
        return definitions, {journey_id: journey_versions.newest_version(db, journey_id) for journey_id in views}


def _sign_in_page(
    request: Request,
    sessions: SupportSessions,
    return_to: str,
    problem: str = "",
    status_code: int = status.HTTP_200_OK,
) -> Response:
    cookie, token = sessions.new_sign_in_form()
    response = _page("login.html", status_code, next=return_to, csrf=token, problem=problem)
    _set_cookie(request, response, SIGN_IN_COOKIE, cookie, path=SIGN_IN_PATH, max_age=None)
    return response


def _refuse_forgery(request: Request, session: SupportSession, token: str) -> None:
    _refuse_cross_site(request)
    if not csrf_matches(session, token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, FORGED_FORM)


def _refuse_cross_site(request: Request) -> None:
    origin = request.headers.get("Origin")
    # Under Referrer-Policy: no-referrer a browser sends `Origin: null` with this site's own
    # forms, and no Referer: then the token alone decides.
    if origin and origin != "null":
        claimed = origin
    elif referer := request.headers.get("Referer"):
        claimed = _origin_of(referer)
    else:
        return
    own = {_origin_of(str(request.base_url)), _origin_of(settings_of(request).public_url)}
    if claimed not in own:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "a form sent from another site is refused; nothing was done"
        )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _safe_return(path: str) -> str:
    dot_segment = any(segment in (".", "..") for segment in path.split("/"))
    if _RETURN_PATH.fullmatch(path) and not dot_segment and path != SIGN_IN_PATH:
        return path
    return "/support"


def _over_tls(request: Request) -> bool:
    # uvicorn turns X-Forwarded-Proto into the scheme only for proxies it trusts
    # (FORWARDED_ALLOW_IPS, 127.0.0.1 by default); an https public URL settles it too.
    return request.url.scheme == "https" or settings_of(request).public_url.startswith("https://")


def _set_cookie(
    request: Request, response: Response, name: str, value: str, path: str, max_age: int | None
) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=path, secure=_over_tls(request), httponly=True, samesite="strict"
    )


def _delete_cookie(request: Request, response: Response, name: str, path: str) -> None:
    response.delete_cookie(name, path=path, secure=_over_tls(request), httponly=True, samesite="strict")


def _page(template: str, status_code: int = status.HTTP_200_OK, **values: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**values), status_code=status_code)


def _message_page(status_code: int, title: str, text: str, sign_in: bool = False) -> HTMLResponse:
    return _page("message.html", status_code, title=title, text=text, sign_in=sign_in or status_code == 401)


def _diagram(definition: Journey) -> list[dict[str, Any]]:
    stages = []
    for name, stage in definition.stages.items():
        lines = []
        for transition in stage.transitions:
            if transition.on:
                lines.append(
                    f"{transition.to} on {transition.on}"
                    + (f" if {in_words(transition.when)}" if transition.when else "")
                )
            else:
                without = f" without {transition.without}" if transition.without else ""
                lines.append(
                    f"{transition.to} after {format_duration(transition.after) if transition.after else ''}{without}"
                )
        stages.append(
            {
                "name": name,
                "description": stage.description,
                "flow": flow_in_words(stage.flow),
                "transitions": lines,
            }
        )
    return stages


@dataclass(frozen=True)
class _Moment:
    """A time as support reads it: in the customer's zone, with UTC on hover."""

    at: datetime
    zone: tzinfo

    @property
    def local(self) -> str:
        return _aware(self.at).astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z")

    @property
    def utc(self) -> str:
        return _aware(self.at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class _TimelineRow:
    when: _Moment
    kind: str
    what: str
    detail: str
    status: str = ""
    link: str | None = None
    """The message's own page, for a message."""


def _aware(moment: datetime) -> datetime:
    # SQLite gives the ledger's and the events' times back without their zone: they are UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _zone(record: CustomerRecord) -> tzinfo:
    """The customer's time zone (UTC without a profile, or with a zone this machine lacks)."""
    if record.profile is None:
        return UTC
    try:
        return ZoneInfo(record.profile.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _timeline(record: CustomerRecord, zone: tzinfo) -> list[_TimelineRow]:
    rows = [
        _TimelineRow(_Moment(event.occurred_at, zone), "event", f"event {event.type}", event.event_id)
        for event in record.events
    ]
    rows += [
        _TimelineRow(
            _Moment(message.scheduled_at, zone),
            "message",
            f"{message.channel} {message.template}" + (" (test send)" if message.test else ""),
            f"{message.journey_id} / {message.stage}" + (f" — {message.reason}" if message.reason else ""),
            message.status,
            f"{customer_path(message.customer_id)}/messages/{message.id}",
        )
        for message in record.messages
    ]
    for journey_id, view in record.journeys.items():
        rows += [
            _TimelineRow(_Moment(change.at, zone), "stage", f"{journey_id} → {change.stage}", change.cause)
            for change in view.stage_history
        ]
        rows += [
            _TimelineRow(_Moment(item.at, zone), "support", f"{item.action} by {item.by}", item.reason)
            for item in view.support_actions
        ]
    return sorted(rows, key=lambda row: _aware(row.when.at), reverse=True)
