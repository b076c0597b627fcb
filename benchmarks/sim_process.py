"""The simulated exchange in its own process, for the benchmarks that time or count what the exchange receives.

Run as a script it serves the same `SimServer` as `ats sim serve --mode manual` (or realtime), with one addition:
every HTTP request is recorded on arrival (system clock in ns, so comparable with other processes on this host;
method, path, the order's symbol, type, side and client ids; for the admin API the symbol it names), and
`GET /bench/requests?since=N` returns the records from the N-th on. The recorder sits in front of the sim's ASGI
entry, so a latency measured from an admin request (`/sim/price`, `/sim/advance`: the market moves) to an order's
arrival is what the exchange sees: the tick's publication, the client's reaction and both network legs, nothing of
the driver's own timing. `SimProcess` starts it from a benchmark and drives it through the admin API
(`sim.server.SimControl`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import httpx
from starlette.types import Message, Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.server import SimConfig, SimControl, SimServer

KEPT = ("symbol", "type", "side", "newClientOrderId", "clientAlgoId", "origClientOrderId", "reduceOnly")
WEIGHT_LIMIT = 1_000_000  # the driver opens positions from the same IP: the monitor must never be refused for it


@dataclass(frozen=True, slots=True)
class Received:
    """One HTTP request as the exchange received it."""

    ns: int  # time.time_ns() on arrival
    method: str
    path: str
    params: dict[str, str]

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


class RecordingSim(SimServer):
    """SimServer whose HTTP entry records each request first (see the module docstring)."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.received: list[tuple[int, str, str, dict[str, str]]] = []

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().asgi(scope, receive, send)
            return
        arrived = time.time_ns()
        path = str(scope["path"])
        if path == "/bench/requests":
            since = int(dict(parse_qsl(scope["query_string"].decode())).get("since", 0))
            body = json.dumps(self.received[since:]).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        params: dict[str, str] = {}
        if path.startswith("/sim/"):
            try:
                data = json.loads(raw) if raw.strip() else {}
            except ValueError:
                data = {}
            if isinstance(data, dict) and "symbol" in data:
                params["symbol"] = str(data["symbol"])
        else:
            every = dict(parse_qsl(scope["query_string"].decode())) | dict(parse_qsl(raw.decode(errors="replace")))
            params = {k: every[k] for k in KEPT if k in every}
        self.received.append((arrived, str(scope["method"]), path, params))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await super().asgi(scope, replay, send)


class SimProcess:
    """`python benchmarks/sim_process.py` as a child process: its URLs, its admin API and its request record."""

    def __init__(
        self, *, seed: int = 3, replay_dir: Path | None = None, history_bars: int = 1500, realtime: bool = False
    ) -> None:
        self._seed = seed
        self._realtime = realtime
        self._replay = replay_dir
        self._history = history_bars
        self._tmp = tempfile.TemporaryDirectory(prefix="ats-bench-sim-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.rest_url = self.ws_url = ""

    def __enter__(self) -> Self:
        port_file = Path(self._tmp.name) / "port"
        argv = [sys.executable, __file__, "--port-file", str(port_file), "--seed", str(self._seed)]
        argv += ["--history-bars", str(self._history)]
        if self._realtime:
            argv.append("--realtime")
        if self._replay is not None:
            argv += ["--replay", str(self._replay)]
        self.log_path = Path(self._tmp.name) / "sim.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sim process did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text())
        self.rest_url, self.ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        self.control = SimControl(self.rest_url, timeout_s=60)
        self._http = httpx.Client(base_url=self.rest_url, timeout=60)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._http.close()
        self._tmp.cleanup()

    def admin(self, path: str, body: dict[str, Any]) -> Any:
        response = self._http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def received(self, since: int = 0) -> list[Received]:
        rows = self._http.get("/bench/requests", params={"since": since}).json()
        return [Received(ns, method, path, params) for ns, method, path, params in rows]

    def count(self) -> int:
        return len(self._http.get("/bench/requests").json())


async def _serve(args: argparse.Namespace) -> None:
    config = SimConfig(
        seed=args.seed,
        mode="realtime" if args.realtime else "manual",
        port=0,
        weight_limit=WEIGHT_LIMIT,
        replay_dir=args.replay,
        history_bars=args.history_bars,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with RecordingSim(config) as sim:
        args.port_file.write_text(str(sim.port))
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--replay", type=Path, default=None)
    parser.add_argument("--history-bars", type=int, default=1500)
    parser.add_argument("--realtime", action="store_true", help="the market ticks every second (default: manual)")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
