"""The request bodies of the platform routes, as dependencies: declared in OpenAPI, read
through the bounded JSON parser, validated strictly as declared.

FastAPI would validate a declared body in Python mode, where a string passes for a number
only loosely and a date never does; the declaration here is kept for /docs, and the raw
JSON is validated in JSON mode, strictly (no "12" for 12). A problem is a
RequestValidationError, so it gets the one `{field, message}` shape of every other 422.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Body, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.models import MAX_BATCH, EventsBody, ProfileBody, ProfileUpdate


def invalid(field: Sequence[str | int], message: str) -> RequestValidationError:
    """A refusal of the body naming `field` (its path inside the body; empty for the whole)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *field), "msg": message, "input": None}]
    )


async def _profile(request: Request, declared: Annotated[ProfileBody, Body()]) -> ProfileUpdate:
    # The bounded parse refuses what is not JSON within bounds (depth, NaN, lone surrogates)
    # whatever the Content-Type; FastAPI parses only bodies sent as JSON.
    await request.json()
    try:
        return ProfileUpdate.model_validate_json(await request.body(), strict=True)
    except ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
        ) from None


async def _events(request: Request, declared: Annotated[EventsBody, Body()]) -> list[Any]:
    # Each event is validated by the route on its own: one bad event is rejected and the
    # rest of the batch kept.
    value = await request.json()
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_BATCH:
        raise invalid((), f"{len(items)} events: at most {MAX_BATCH} a batch")
    return items


ProfileUpdateBody = Annotated[ProfileUpdate, Depends(_profile)]
"""PUT /v1/customers/{id}: the profile, strictly as declared."""
EventItems = Annotated[list[Any], Depends(_events)]
"""POST /v1/events: one event or a batch of at most MAX_BATCH, as the JSON values sent."""
