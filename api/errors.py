"""Every refusal the API gives: one shape, declared in OpenAPI, made by the handlers here.

A refusal is `{"detail": "text"}` or `{"detail": [{"field", "message"}, ...]}`. Temporal or the
database not answering in time is a 503 with `Retry-After`, never a 500: the caller can retry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What a 429 or 503 asks the caller to wait: long enough for a stalled Temporal call to give up."""

NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
"""Path and query values: a NUL or newline is never part of an id, a stage or a filter."""


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """Why a request was refused; a list names each bad field."""

    detail: str | list[FieldError]


_MEANING = {
    400: "the body could not be read",
    401: "no API key, or an unknown one (`Authorization: Bearer KEY`)",
    403: "the API key lacks the scope this route needs, or a webhook signature is wrong",
    404: "no such customer, journey or action",
    409: "the journey refused the action (e.g. already paused, or ended)",
    413: "the request body is over CYKLO_MAX_REQUEST_BYTES",
    422: "bad input: each problem names its field",
    429: "too many requests in flight: retry after `Retry-After` seconds",
    503: "Temporal or the database did not answer in time: retry after `Retry-After` seconds",
}
_RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def responses(*codes: int, **bodies: Any) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these refusals; `bodies` (e.g. `r422={...}`) replace a body schema."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": Problem, "description": _MEANING[code]}
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER_HEADER
        if f"r{code}" in bodies:
            entry.update(bodies[f"r{code}"])
        declared[code] = entry
    return declared


def refusal(code: int, detail: str | Sequence[FieldError | Mapping[str, str]]) -> JSONResponse:
    body = Problem(detail=detail if isinstance(detail, str) else [FieldError.model_validate(item) for item in detail])
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if code in (429, 503) else None
    return JSONResponse(body.model_dump(), status_code=code, headers=headers)


def field_errors(problems: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """pydantic's or FastAPI's error list as `{field, message}`; `field` is the dotted path."""
    found = []
    for problem in problems:
        location = [str(part) for part in problem["loc"]]
        if location and location[0] in ("body", "query", "path", "header"):
            location = location[1:] or location[:1]
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem.get("type") == "string_pattern_mismatch" and (problem.get("ctx") or {}).get(
            "pattern"
        ) == NO_CONTROL_CHARACTERS:
            message = "must not contain control characters (NUL, tab, newline, ...)"
        found.append(FieldError(field=".".join(location) or "body", message=message))
    return found


def log_refusal(request: Request, code: int) -> None:
    """One line per refused request: the route's template, never the path, whose ids and query
    a caller may have filled with anything (an address, say)."""
    route = getattr(request.scope.get("route"), "path", "(no route)")
    log.info("refused %s %s: %d", request.method, route, code)


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    log_refusal(request, status.HTTP_422_UNPROCESSABLE_CONTENT)
    return refusal(status.HTTP_422_UNPROCESSABLE_CONTENT, field_errors(error.errors()))


async def _temporal_refused(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RPCError)
    if error.status == RPCStatusCode.INVALID_ARGUMENT:
        return refusal(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Temporal refused the request: {error.message}")
    log.warning("Temporal call failed on %s: %s", request.url.path, error.status)
    return refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "the journeys (Temporal) did not answer: try again")


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    # The error text of a database driver can name hosts and users: the log gets only its kind.
    log.warning("%s on %s", type(error).__name__, request.url.path)
    what = "the database" if isinstance(error, OperationalError) else "the journeys (Temporal)"
    return refusal(status.HTTP_503_SERVICE_UNAVAILABLE, f"{what} did not answer in time: try again")


async def _http_refusal(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    log_refusal(request, error.status_code)
    if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        # Starlette names only the methods of the first route on the path; a path served by
        # several routes (GET, PUT and DELETE of a customer) allows all that OpenAPI declares.
        allowed = set(str((error.headers or {}).get("Allow", "")).replace(" ", "").split(","))
        for template, operations in request.app.openapi()["paths"].items():
            if re.fullmatch(_PARAMETER.sub("[^/]+", re.escape(template)), request.url.path):
                allowed |= {method.upper() for method in operations}
        error.headers = {**(error.headers or {}), "Allow": ", ".join(sorted(allowed - {""}))}
    return await http_exception_handler(request, error)


_PARAMETER = re.compile(r"\\\{[^/]+?\\\}")
"""`{customer_id}` in a path template, as re.escape writes it."""


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_refusal)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(RPCError, _temporal_refused)
    for kind in (TimeoutError, OperationalError, WorkflowQueryFailedError):
        app.add_exception_handler(kind, _unavailable)
