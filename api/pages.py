"""The support page: one customer's profile, journeys with a stage diagram, timeline, actions.

Server-rendered (Jinja2), so it works without JavaScript; actions are forms that run the
same workflow updates as the API and come back to the page with the outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.auth import requires
from api.support import ActionRequest, run_action
from definition.durations import format_duration
from definition.model import Journey
from storage import journey_versions
from storage.database import session_for

router = APIRouter(tags=["support page"], include_in_schema=False)
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "pages"), autoescape=select_autoescape(["html"])
)


@router.get("/support/{customer_id}", response_class=HTMLResponse)
async def support_page(
    customer_id: str, request: Request, notice: str = "", _: str = Depends(requires("support:read"))
) -> HTMLResponse:
    from api.app import customer_record

    record = await customer_record(request, customer_id)
    settings = request.app.state.settings
    journeys = []
    with session_for(settings.database_url) as session:
        for journey_id, view in record["journeys"].items():
            definition = Journey.model_validate_json(
                journey_versions.get(session, journey_id, view["version"]).definition
            )
            journeys.append(
                {"id": journey_id, "name": definition.name, "view": view, "stages": _diagram(definition)}
            )
    page = _templates.get_template("support.html").render(
        profile=record["profile"],
        journeys=journeys,
        timeline=_timeline(record),
        notice=notice,
        key=quote(request.query_params.get("key", "")),
    )
    return HTMLResponse(page)


@router.post("/support/{customer_id}/{journey_id}/{action}")
async def support_action(
    customer_id: str,
    journey_id: str,
    action: str,
    request: Request,
    stage: str | None = Form(default=None),
    caller: str = Depends(requires("support:write")),
) -> RedirectResponse:
    try:
        await run_action(
            request.app.state.client, customer_id, journey_id, action, ActionRequest(stage=stage), caller
        )
        notice = f"{action.replace('_', ' ')}: done"
    except HTTPException as refusal:
        notice = str(refusal.detail)
    key = quote(request.query_params.get("key", ""))
    return RedirectResponse(f"/support/{customer_id}?key={key}&notice={quote(notice)}", status_code=303)


def _diagram(definition: Journey) -> list[dict[str, Any]]:
    stages = []
    for name, stage in definition.stages.items():
        lines = []
        for transition in stage.transitions:
            if transition.on:
                lines.append(
                    f"{transition.to} on {transition.on}"
                    + (f" if {transition.when}" if transition.when else "")
                )
            else:
                without = f" without {transition.without}" if transition.without else ""
                lines.append(
                    f"{transition.to} after {format_duration(transition.after) if transition.after else ''}{without}"
                )
        stages.append({"name": name, "description": stage.description, "transitions": lines})
    return stages


def _timeline(record: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {
            "at": item["occurred_at"],
            "kind": "event",
            "what": f"event {item['type']}",
            "detail": item["event_id"],
            "status": "",
        }
        for item in record["events"]
    ]
    rows += [
        {
            "at": message["scheduled_at"],
            "kind": "message",
            "what": f"{message['channel']} {message['template']}",
            "detail": f"{message['journey_id']} / {message['stage']}"
            + (f" — {message['reason']}" if message.get("reason") else ""),
            "status": message["status"],
        }
        for message in record["messages"]
    ]
    for journey_id, view in record["journeys"].items():
        rows += [
            {
                "at": change["at"],
                "kind": "stage",
                "what": f"{journey_id} → {change['stage']}",
                "detail": change["cause"],
                "status": "",
            }
            for change in view["stage_history"]
        ]
        rows += [
            {
                "at": item["at"],
                "kind": "support",
                "what": f"{item['action']} by {item['by']}",
                "detail": item["reason"],
                "status": "",
            }
            for item in view.get("support_actions", [])
        ]
    return sorted(rows, key=lambda row: row["at"], reverse=True)
