"""`cyklo api`: the HTTP API for the shop platform and support."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the API (OpenAPI docs at /docs); keys come from CYKLO_API_KEYS. SIGTERM or Ctrl-C
    stops it: requests in flight are answered first."""
    from api.access_log import log_config
    from api.app import create_app
    from process.shutdown import Stop, http_server, run_until_stopped
    from settings import get_settings

    settings = get_settings()

    async def serve(stop: Stop) -> None:
        server = http_server(
            create_app(settings), host=host, port=port, log_level="info", log_config=log_config(settings)
        )
        serving = asyncio.ensure_future(server.serve())
        await stop.wait(serving)
        server.should_exit = True
        await serving

    run_until_stopped(serve)
