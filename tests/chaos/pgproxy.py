"""A TCP proxy in front of PostgreSQL that can be cut: the database 'stops' for the monitor (every connection
dropped, new ones refused) while the server itself, shared by the whole test session, stays up."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from sqlalchemy.engine import make_url


class PgProxy:
    """Forwards 127.0.0.1:<port> to the database server; `cut(seconds)` is the outage. Runs in its own thread."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._down_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-proxy", daemon=True)

    @classmethod
    def for_url(cls, url: str) -> PgProxy:
        parsed = make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 5432)

    def url(self, url: str) -> str:
        """`url` (a database on the upstream server) reached through this proxy."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the PostgreSQL proxy did not start")

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            async with self._server:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._server.serve_forever()

        asyncio.run(main())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._down_until:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        self._writers.difference_update((writer, up_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self, seconds: float) -> None:
        """Drop every connection now and refuse new ones for `seconds`."""
        assert self._loop is not None
        self._down_until = time.monotonic() + seconds

        def drop() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(drop)

    def heal(self) -> None:
        self._down_until = 0.0

    def stop(self) -> None:
        """Drop every connection, stop listening and end the thread."""
        if self._loop is not None and not self._loop.is_closed() and self._server is not None:
            server = self._server

            async def shut() -> None:
                for writer in list(self._writers):
                    writer.transport.abort()
                server.close()

            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile: nothing left to stop
                asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._thread.join(timeout=10)
