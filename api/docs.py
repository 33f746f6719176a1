"""/docs and /redoc with no internet: Swagger UI and ReDoc come from the `fastapi-offline`
package (api.app builds the app with it), and a policy keeps the browser from fetching
anything else, such as the logo ReDoc's sidebar loads from its makers' CDN."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

DOCS_PATHS = ("/docs", "/redoc")
DOCS_POLICY = (
    # The pages' own inline start-up script; ReDoc's search runs in a worker made from a blob.
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'"
)


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def docs_stay_local(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path in DOCS_PATHS:
            response.headers["Content-Security-Policy"] = DOCS_POLICY
        return response
