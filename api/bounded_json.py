"""Request bodies read within bounds: a size cap while streaming and once unzipped, a nesting cap, strict JSON.

Python's parser recurses: 5,000 nested `{` raise RecursionError, and a body only just under
that depth still costs every later step (validation, the database, Temporal payloads) as
much. NaN, Infinity and numbers past float range are not JSON and would be stored as
non-standard JSON; a lone surrogate cannot be encoded again. All are refused at the door
with a 422 that names where they are.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute

from api.dependencies import settings_of

MAX_DEPTH = 32
"""Objects and arrays inside each other; events and profiles use three or four."""


class BadJson(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse(raw: bytes | str) -> Any:
    """The JSON value of `raw`, or BadJson naming the place and the problem."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadJson("body", f"nested too deep: at most {MAX_DEPTH} levels of objects and arrays") from None
    except BadJson:
        raise
    except (ValueError, UnicodeDecodeError) as error:
        raise BadJson("body", f"not JSON: {error}") from None
    _check_nesting_and_text(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise BadJson("body", f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # An out-of-range number becomes infinity here and is refused by the walk below, which
    # knows where it stands.
    return float(text)


def _check_nesting_and_text(root: Any) -> None:
    # Iterative, so a body that json.loads could still take never recurses here.
    pending: list[tuple[Any, str, int]] = [(root, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value, path)
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise BadJson(path or "body", "number out of range: at most about 1.8e308")
        if not isinstance(value, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise BadJson(path or "body", f"nested too deep: at most {MAX_DEPTH} levels of objects and arrays")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                # The parent is named, not the key: a bad key cannot be written into the answer.
                _check_text(key, path)
            where = f"{path}.{key}" if path else str(key)
            pending.append((item, where, depth + 1))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJson(where or "body", "contains a lone surrogate (\\ud800-\\udfff): not valid Unicode") from None


class BoundedJsonRequest(Request):
    """A request whose body is read at most CYKLO_MAX_REQUEST_BYTES and parsed with `parse`."""

    async def stream(self) -> AsyncGenerator[bytes, None]:
        # Counted as it arrives: a chunked body has no Content-Length for the middleware to
        # refuse, and a form (Twilio's) is read from the stream, not through body().
        limit = settings_of(self).max_request_bytes
        size = 0
        async for chunk in super().stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"request body over {limit} bytes: send smaller batches"
                )
            yield chunk

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            self._body = b"".join([chunk async for chunk in self.stream()])
            if self.headers.get("Content-Encoding", "").strip().lower() == "gzip":
                self._body = _gunzipped(self._body, settings_of(self).max_request_bytes)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse(await self.body())
            except BadJson as error:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT, [{"field": error.field, "message": error.message}]
                ) from None
        return self._json


def _gunzipped(raw: bytes, limit: int) -> bytes:
    """The body of a gzip request (the Segment libraries send one when asked), within the
    same limit as a plain one: a few kilobytes of gzip can stand for gigabytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Content-Encoding is gzip but the body is not gzip") from None
    if len(body) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"request body over {limit} bytes once unzipped: send smaller batches"
        )
    if not inflater.eof:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the gzip body ends before its end: send it whole")
    return body


class BoundedJsonRoute(APIRoute):
    """FastAPI's route, reading bodies as BoundedJsonRequest (FastAPI's documented custom-request hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(BoundedJsonRequest(request.scope, request.receive))

        return bounded
