"""How `cyklo dev`, `cyklo worker` and `cyklo api` stop: one way for all three.

The first SIGTERM or SIGINT asks for an orderly stop: the API stops taking connections, the
worker lets the sends in flight finish, child servers are terminated, and the process exits
with 0. A second signal, or a stop that overruns its budget, ends the process at once: a send
cut off then stays `sending` in the ledger and is never sent again (at most once).

Our handlers are installed with `signal.signal` before the event loop starts, for three
reasons. uvicorn's own handlers stop only the API and then re-raise the signal, which turned
into a KeyboardInterrupt that cancelled the Temporal worker in the middle of its shutdown
(it then waited for ever). A job started with `&` from a script has SIGINT ignored, and must
still stop on it. And a handler that runs between bytecodes, not on the loop, still starts
the budget's clock when the loop is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any

import uvicorn

from definition.problems import SaidToPeople
from logs import setup_logging
from settings import get_settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

STOP_BUDGET_SECONDS = 9.0
"""From the first signal to the process's end. A supervisor kills after its own timeout
(10 s is what cyklo promises; Docker's default, 10 s, is the strictest common one): the
last second is left to the interpreter's exit."""

SEND_GRACE_SECONDS = 5.0
"""The worker's graceful_shutdown_timeout. A send takes well under a second at a provider
that answers; five leave four for the API, the emulator and the Temporal dev server to
stop inside the budget. A send still waiting after that is cancelled, and the ledger keeps
it from ever being sent twice."""

REQUEST_GRACE_SECONDS = 3
"""How long the API lets requests in flight finish once it stops accepting connections."""

CHILD_GRACE_SECONDS = 3.0
"""A child server still running this long after SIGTERM is killed. The Temporal dev server
took 2.4 s to stop on a machine with ten processes per core; the send grace and this one
together stay inside the budget."""

EXIT_BUDGET_OVERRUN = 1


class Stop:
    """The stop of this process, asked for by a signal."""

    def __init__(self, budget_seconds: float = STOP_BUDGET_SECONDS) -> None:
        self._budget_seconds = budget_seconds
        self._asked = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked_on_loop: asyncio.Event | None = None

    @property
    def asked(self) -> bool:
        return self._asked.is_set()

    def install(self) -> None:
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, self._on_signal)

    async def wait(self, *alongside: asyncio.Future[Any]) -> None:
        """Until a stop is asked, or one of `alongside` (a server, a worker) ends by itself."""
        if self._asked_on_loop is None:
            self._loop = asyncio.get_running_loop()
            self._asked_on_loop = asyncio.Event()
            if self.asked:  # a signal that came while the process was starting
                self._asked_on_loop.set()
        asked = asyncio.ensure_future(self._asked_on_loop.wait())
        try:
            await asyncio.wait([asked, *alongside], return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.asked:
            self._force(f"{name} again: stopping at once", 128 + signum)
        self._asked.set()
        _say(f"cyklo: {name}: stopping (a second signal stops at once)")
        watchdog = threading.Timer(
            self._budget_seconds,
            self._force,
            args=(f"the stop took over {self._budget_seconds:g} s: stopping at once", EXIT_BUDGET_OVERRUN),
        )
        watchdog.daemon = True
        watchdog.start()
        if self._loop is not None and self._asked_on_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the stop is done
                self._loop.call_soon_threadsafe(self._asked_on_loop.set)

    @staticmethod
    def _force(why: str, code: int) -> None:
        # Child servers die with us: the Temporal dev server through its parent-death signal.
        _say(f"cyklo: {why}")
        # From the watchdog's thread a flush could wait for ever on a main thread stuck
        # mid-write; in the signal handler a flush interrupting one raises instead.
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(Exception):
                sys.stdout.flush()
        os._exit(code)


def run_until_stopped(
    main: Callable[[Stop], Coroutine[Any, Any, None]], budget_seconds: float = STOP_BUDGET_SECONDS
) -> None:
    """Run `main` (which awaits `stop.wait()` and then stops its parts in order) and exit.

    After an orderly stop the process ends with os._exit(0), its streams flushed: nothing is
    left to run, and a normal interpreter exit could still block on a thread that no one
    waits for or crash in the Temporal SDK's teardown (temporalio/sdk-python#300)."""
    # Worker, API and `cyklo dev` all start here: one place sets their logging up.
    setup_logging(get_settings())
    stop = Stop(budget_seconds)
    stop.install()
    asyncio.run(main(stop))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class ServerDidNotStart(SaidToPeople, RuntimeError):
    pass


class HttpServer(uvicorn.Server):
    """uvicorn without signal handlers of its own: the process's Stop says when it ends."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().serve(sockets)
        except SystemExit:
            # uvicorn's word for a port it could not bind or an app that failed to start, which
            # it has already logged. As SystemExit it would escape the event loop and leave
            # whatever runs beside the API (the worker, in `cyklo dev`) cancelled mid-flight.
            raise ServerDidNotStart(
                f"the API did not start on {self.config.host}:{self.config.port} (the reason is above)"
            ) from None

    async def until_started(self, serving: asyncio.Future[None]) -> None:
        """Until it listens; the reason it stopped if it ended first."""
        while not self.started:
            if serving.done():
                await serving
                raise ServerDidNotStart(f"the API on {self.config.host}:{self.config.port} stopped at once")
            await asyncio.sleep(0.05)


def http_server(
    app: Any, host: str, port: int, log_level: str, log_config: dict[str, Any] | None = None
) -> HttpServer:
    options: dict[str, Any] = {"log_config": log_config} if log_config is not None else {}
    return HttpServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=REQUEST_GRACE_SECONDS,
            **options,
        )
    )


def _say(line: str) -> None:
    # os.write, not print: a signal handler may interrupt a print of the main thread.
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), (line + "\n").encode())
