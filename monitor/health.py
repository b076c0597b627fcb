"""Health and metrics over HTTP on a local port: /livez, /readyz, /metrics.

- /livez: the process is alive and its event loop responsive (a one-second ticker ran recently). A blocked loop
  cannot answer at all, which a probe's timeout reports just the same.
- /readyz: the process knows its role; a standby is ready, an active monitor only with its streams connected and
  a recent successful reconciliation. The JSON body says why it is not.
- /metrics: Prometheus text format.

A deliberately small HTTP/1.1 server on asyncio streams: three GET routes, no keep-alive, nothing to configure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ats.log import get_logger
from monitor.metrics import MonitorMetrics

log = get_logger(__name__)

REQUEST_TIMEOUT_S = 5.0


class HealthServer:
    def __init__(
        self, metrics: MonitorMetrics, *, host: str, port: int, live_within_s: float, monotonic: Callable[[], float]
    ) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._live_within_s = live_within_s
        self._monotonic = monotonic
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one the system picked for port 0)."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("health endpoint listening", url=f"http://{self._host}:{self.port}/readyz")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def live(self) -> tuple[bool, dict[str, object]]:
        last = self._metrics.state.alive_mono
        age = None if last is None else self._monotonic() - last
        ok = age is not None and age <= self._live_within_s
        return ok, {"live": ok, "loop_age_s": None if age is None else round(age, 3)}

    def ready(self) -> tuple[bool, dict[str, object]]:
        state = self._metrics.state
        problems = list(state.problems)
        if state.role not in ("active", "standby"):
            problems.append(f"role is {state.role}")
        ok = not problems
        return ok, {
            "ready": ok,
            "role": state.role,
            "open_positions": state.open_positions,
            "last_reconcile_ms": state.last_reconcile_ms,
            "problems": problems,
        }

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                request = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers are not needed
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = self._route(method, path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))  # HEAD: the headers only
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._metrics.registry)
        if path in ("/livez", "/readyz"):
            ok, body = self.live() if path == "/livez" else self.ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, "application/json", json.dumps(body).encode() + b"\n"
        return "404 Not Found", "text/plain", b"try /livez, /readyz or /metrics\n"
