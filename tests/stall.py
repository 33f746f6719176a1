"""A TCP relay in front of a real server that can be told to stop passing bytes.

Stopped, it still accepts connections and reads what clients send, but nothing reaches the
server and nothing comes back: a server that is overloaded, paused or cut off by a network
fault, as a client sees it. Resumed, the held bytes flow on. It runs its own event loop in a
thread, so a client that blocks the test's loop (a synchronous database driver) is still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Stall:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target_host, self.target_port = host, int(port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._pipes: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self.flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self.flowing.set)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        pipes = [
            asyncio.create_task(self._pipe(client_reader, server_writer)),
            asyncio.create_task(self._pipe(server_reader, client_writer)),
        ]
        self._pipes.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[Stall]:
        thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop
        ).result(timeout=10)
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            self.resume()
            asyncio.run_coroutine_threadsafe(self._close(server), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(timeout=10)
            self._loop.close()
