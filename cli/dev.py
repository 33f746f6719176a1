"""`cyklo dev`: run everything locally with one command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from settings import Settings


def dev(
    data: Annotated[Path, typer.Option(help="Folder for every piece of local data.")] = Path(".cyklo"),
    demo: Annotated[bool, typer.Option(help="Enrol a few sample customers and send their events.")] = False,
    api_port: Annotated[int, typer.Option(help="Port of the HTTP API.")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Port of the Temporal dev server (UI: +1000).")] = 7233,
    emulator_port: Annotated[int, typer.Option(help="Port of the provider emulator.")] = 8025,
) -> None:
    """Temporal dev server, worker, API and provider emulator on 127.0.0.1; Ctrl-C stops them all."""
    from process.shutdown import Stop, run_until_stopped
    from settings import get_settings
    from stack.local import Ports, run

    settings = dev_database(get_settings(), data)
    ports = Ports(
        temporal=temporal_port, temporal_ui=temporal_port + 1000, api=api_port, emulator=emulator_port
    )

    # A supervisor's SIGTERM stops the stack as cleanly as Ctrl-C does.
    async def until_stopped(stop: Stop) -> None:
        await run(data.resolve(), settings, ports, demo, stop)
        typer.echo("cyklo stopped; start it again to resume every journey where it was")

    run_until_stopped(until_stopped)


def dev_database(base: Settings, data: Path) -> Settings:
    """The database goes into the data folder too, unless the environment names one."""
    if "CYKLO_DATABASE_URL" in os.environ:
        return base
    return base.model_copy(update={"database_url": f"sqlite:///{data}/cyklo.db"})
