"""The Binance-compatible simulated exchange: REST + WebSocket on loopback, with fault injection.

Speaks USDⓈ-M futures' protocol (paths, parameters, HMAC signing, error codes, weight headers, 429/418,
the 2026 /public /market /private WebSocket split) so the project's client and third-party clients such as
ccxt can be pointed at it. The matching engine and market live in-process (`sim.engine`, `sim.market`);
an admin API under /sim/ (not a Binance path, unsigned) sets prices, advances time, injects faults and
reads state for tests and demos.

Time: the server's clock is injectable. By default it is an `OffsetClock` (wall time plus everything
`advance` added), so signed requests made with wall-clock timestamps keep passing the recvWindow check while
tests move the market forward at will. In "manual" mode only `advance` and `set_price` move the market; in
"realtime" mode a background task ticks it every second of wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ats.clock import Clock, WallClock
from ats.config import SIM_API_KEY, SIM_API_SECRET
from ats.domain import BINANCE_INTERVALS
from ats.log import get_logger
from sim.engine import Engine, EngineOptions, SimError, int_param, limit_param, param, required
from sim.faults import FaultKind, FaultRule, Faults, StreamStall
from sim.market import KLINE_INTERVALS, OI_PERIODS, Market, PriceSource, ReplaySource, SyntheticSource, TickInfo
from sim.streams import Stream, StreamBook, StreamError, wire_levels
from sim.streams import family as stream_family
from sim.streams import parse as parse_stream

log = get_logger(__name__)

UNKNOWN_ERROR_MSG = "Unknown error, please check your request or try again later."
UNAVAILABLE_MSG = "Service Unavailable."
MAX_URL_BYTES = 8192  # CloudFront's (and nginx's default) request-line limit: longer gets 414
MAX_REQUEST_HEAD_BYTES = 8 * 1024 * 1024  # read a head this large before answering, so the answer is not lost
WS_QUEUE_LIMIT = 20_000  # a client this far behind is disconnected, as Binance drops slow consumers
BOOK_UPDATE_S = 0.1  # realtime mode: the books change every 100 ms between the one-second market ticks


class OffsetClock:
    """Wall time plus an offset that only grows: the manual-mode clock (see module docstring)."""

    def __init__(self, base: Clock | None = None) -> None:
        self.base = base or WallClock()
        self.offset_ms = 0

    def now_ms(self) -> int:
        return self.base.now_ms() + self.offset_ms

    def monotonic(self) -> float:
        return self.base.monotonic() + self.offset_ms / 1000.0

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self.offset_ms += round(seconds * 1000)


@dataclass
class SimConfig:
    """Everything that shapes one simulated exchange."""

    seed: int = 7
    bar_interval: str = "1h"
    mode: Literal["manual", "realtime"] = "manual"
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    balance: Decimal = Decimal(10_000)
    api_keys: dict[str, str] = field(default_factory=lambda: {SIM_API_KEY: SIM_API_SECRET})
    history_bars: int = 1500
    max_bars: int = 3000
    replay_dir: Path | None = None  # replay stored klines instead of the synthetic market
    state_file: Path | None = None  # JSON snapshot of the accounts, restored on start
    state_save_s: float = 60.0
    weight_limit: int = 2400  # REQUEST_WEIGHT per minute per IP
    order_limit_10s: int = 300
    order_limit_1m: int = 1200
    bans_after_429: int = 3  # a client that keeps sending before Retry-After past this many 429s earns a 418
    ban_seconds: float = 120.0
    listen_key_ttl_s: float = 3600.0
    ws_ping_interval_s: float = 180.0
    ws_pong_timeout_s: float = 600.0
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.0005")
    expire_stranded: bool = False  # see EngineOptions.expire_stranded: siblings of a closed position stay open

    def __post_init__(self) -> None:
        if self.bar_interval not in BINANCE_INTERVALS:
            raise ValueError(f"bar_interval must be one of {', '.join(BINANCE_INTERVALS)}")
        if self.mode not in ("manual", "realtime"):
            raise ValueError("mode must be 'manual' or 'realtime'")
        if self.history_bars < 500:
            raise ValueError("history_bars must be at least 500 (clients fetch 300+ bars at once)")


# ---------------------------------------------------------------------------------------------- limits


class RateLimiter:
    """Per-IP request weight per minute, per-account order counts, and 429 -> 418 escalation."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.weight: dict[str, tuple[int, int]] = {}  # ip -> (minute, used)
        self.rejections: dict[str, tuple[int, int]] = {}  # ip -> (Retry-After end announced last, 429s ignoring it)
        self.banned_until: dict[str, int] = {}  # ip -> ms
        self.orders: dict[str, deque[int]] = {}  # api key -> order times (ms)

    def used_weight(self, ip: str) -> int:
        minute = self.clock.now_ms() // 60_000
        window, used = self.weight.get(ip, (minute, 0))
        return used if window == minute else 0

    def add_weight(self, ip: str, weight: int) -> int:
        minute = self.clock.now_ms() // 60_000
        used = self.used_weight(ip) + weight
        self.weight[ip] = (minute, used)
        return used

    def retry_after_s(self) -> int:
        return max(1, 60 - (self.clock.now_ms() // 1000) % 60)

    def ban_check(self, ip: str) -> int | None:
        until = self.banned_until.get(ip)
        if until is None:
            return None
        if self.clock.now_ms() >= until:
            del self.banned_until[ip]
            return None
        return until

    def record_429(self, ip: str, retry_after_s: int) -> int | None:
        """Count a 429; returns the ban end (ms) once the client keeps going past the limit.

        Binance bans for "failing to back off after receiving 429s": a request sent before the Retry-After of the
        previous 429 ended adds to the count, one sent after it starts the count again.
        """
        now = self.clock.now_ms()
        retry_at, count = self.rejections.get(ip, (0, 0))
        count = count + 1 if now < retry_at else 1
        self.rejections[ip] = (now + retry_after_s * 1000, count)
        if count > self.config.bans_after_429:
            until = self.clock.now_ms() + round(self.config.ban_seconds * 1000)
            self.banned_until[ip] = until
            return until
        return None

    def order_counts(self, api_key: str) -> tuple[int, int]:
        now = self.clock.now_ms()
        times = self.orders.setdefault(api_key, deque())
        while times and times[0] <= now - 60_000:
            times.popleft()
        return sum(1 for t in times if t > now - 10_000), len(times)

    def add_order(self, api_key: str) -> tuple[int, int]:
        self.orders.setdefault(api_key, deque()).append(self.clock.now_ms())
        return self.order_counts(api_key)


# ---------------------------------------------------------------------------------------------- endpoints

Handler = Callable[["Call"], Any]
Weight = int | Callable[[Mapping[str, str]], int]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    weight: Weight = 1
    security: Literal["NONE", "USER_STREAM", "SIGNED"] = "NONE"
    order: bool = False  # counts against the order rate limits


@dataclass
class Call:
    """One REST request as a handler sees it."""

    sim: SimServer
    params: dict[str, str]
    engine: Engine | None
    api_key: str | None

    @property
    def account(self) -> Engine:
        assert self.engine is not None, "signed endpoints always carry an engine"
        return self.engine


def _weight_by_symbol(with_symbol: int, without: int) -> Weight:
    return lambda params: with_symbol if params.get("symbol") else without


def _kline_weight(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit", "500"))
    except ValueError:
        return 1
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def _depth_weight(params: Mapping[str, str]) -> int:
    try:
        limit = int(params.get("limit", "500"))
    except ValueError:
        return 2
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


# ---------------------------------------------------------------------------------------------- WebSocket hub


@dataclass(eq=False)
class Connection:
    """One WebSocket client: its path family, subscriptions and outgoing queue."""

    websocket: WebSocket
    family: Literal["market", "public", "private", "legacy"]
    combined: bool
    path: str
    streams: set[str] = field(default_factory=set)
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    transport: asyncio.Transport | None = None  # the socket under the protocol, to stop reading it (a black hole)
    stalled_until: float = 0.0  # monotonic; events offered before this are lost
    deaf: bool = False  # nothing is read (pings go unanswered) until the stall ends
    _hear_later: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self.stalled_until

    def stall(self, seconds: float | None, *, pings: bool) -> None:
        """Deliver nothing for `seconds` (None: until resumed); without `pings`, read nothing either."""
        self.resume()
        if seconds == 0:
            return
        self.stalled_until = math.inf if seconds is None else time.monotonic() + seconds
        if pings or self.transport is None or self.transport.is_closing():
            return
        self.transport.pause_reading()
        self.deaf = True
        if seconds is not None:
            self._hear_later = asyncio.get_running_loop().call_later(seconds, self.resume)

    def resume(self) -> None:
        self.stalled_until = 0.0
        if self._hear_later is not None:
            self._hear_later.cancel()
            self._hear_later = None
        if self.deaf:
            self.deaf = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def offer(self, stream: str, payload: Mapping[str, Any] | list[Any]) -> None:
        if self.family == "legacy" or self.stalled:
            return
        message = {"stream": stream, "data": payload} if self.combined else payload
        if self.queue.qsize() >= WS_QUEUE_LIMIT:
            log.warning("sim websocket client too slow; disconnecting", path=self.path)
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(json.dumps(message, separators=(",", ":")))


@dataclass
class ListenKey:
    key: str
    api_key: str
    expires_ms: int
    connections: set[Connection] = field(default_factory=set)


def _normalise_stream(stream: str) -> str:
    """Stream names as subscribed and unsubscribed: the symbol part lower case, the stream type as given.

    All-market streams ("!bookTicker") and listen keys (no "@") are kept as they are.
    """
    symbol, sep, kind = stream.partition("@")
    return stream if stream.startswith("!") or not sep else f"{symbol.lower()}@{kind}"


# ---------------------------------------------------------------------------------------------- server


class SimServer:
    """The simulated exchange in the current event loop: `async with SimServer(config) as sim: ...`."""

    def __init__(self, config: SimConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock: Clock = clock or OffsetClock()
        self.faults = Faults()
        self.limits = RateLimiter(self.config, self.clock)
        self.market = Market(
            self._source(),
            interval=self.config.bar_interval,
            start_ms=self.clock.now_ms(),
            seed=self.config.seed,
            history_bars=self.config.history_bars,
            max_bars=self.config.max_bars,
        )
        options = EngineOptions(
            maker_fee=self.config.maker_fee,
            taker_fee=self.config.taker_fee,
            seed=self.config.seed,
            expire_stranded=self.config.expire_stranded,
        )
        self.engines: dict[str, Engine] = {}
        for index, key in enumerate(self.config.api_keys):
            engine = Engine(
                self.market, self.clock, balance=self.config.balance, options=options, account=f"account{index + 1}"
            )
            engine.subscribe(functools.partial(self._user_event, key))
            self.engines[key] = engine
        self.listen_keys: dict[str, ListenKey] = {}
        self.connections: set[Connection] = set()
        self.stream_book = StreamBook(self.market)
        self._streams: dict[str, Stream] = {}  # parsed names of the market streams subscribed so far
        self.endpoints: dict[tuple[str, str], Endpoint] = {(e.method, e.path): e for e in self._endpoints()}
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._shutdown = asyncio.Event()
        self._port = 0
        self._restore_state()

    def _source(self) -> PriceSource:
        if self.config.replay_dir is not None:
            return ReplaySource.from_directory(self.config.replay_dir, self.config.bar_interval)
        return SyntheticSource(seed=self.config.seed)

    # ------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        config = uvicorn.Config(
            self.asgi,
            host=self.config.host,
            port=self.config.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",
            ws="websockets-sansio",
            ws_ping_interval=self.config.ws_ping_interval_s,
            ws_ping_timeout=self.config.ws_pong_timeout_s,
            timeout_graceful_shutdown=1,
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        )
        self._server = uvicorn.Server(config)
        serve = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if serve.done():
                serve.result()
                raise RuntimeError("the simulated exchange failed to start")
            await asyncio.sleep(0.005)
        self._tasks.append(serve)
        self._port = int(self._server.servers[0].sockets[0].getsockname()[1])
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        if self.config.mode == "realtime":
            self._tasks.append(asyncio.create_task(self._realtime()))
        log.info("sim exchange started", rest_url=self.rest_url, mode=self.config.mode)

    async def stop(self) -> None:
        self._shutdown.set()
        self.resume_websockets()
        await self.disconnect_websockets()
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks:
            if task is not self._tasks[0]:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.save_state()

    @property
    def port(self) -> int:
        return self._port

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self._port}"

    @property
    def api_key(self) -> str:
        return next(iter(self.config.api_keys))

    @property
    def api_secret(self) -> str:
        return self.config.api_keys[self.api_key]

    @property
    def engine(self) -> Engine:
        """The default account (the first API key's)."""
        return self.engines[self.api_key]

    # ------------------------------------------------------------------------------------- state file

    def _restore_state(self) -> None:
        path = self.config.state_file
        if path is None or not path.exists():
            return
        data = json.loads(path.read_text())
        for key, snapshot in data.get("accounts", {}).items():
            if key in self.engines:
                self.engines[key].restore(snapshot)
        log.info("sim account state restored", file=str(path))

    def save_state(self) -> None:
        """Write the accounts' snapshot atomically (no-op without a state file)."""
        path = self.config.state_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        keyed = {key: engine.snapshot() for key, engine in self.engines.items()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "accounts": keyed}))
        os.replace(tmp, path)

    # ------------------------------------------------------------------------------------- time and market

    async def _housekeeping(self) -> None:
        """Listen-key expiry and periodic state snapshots."""
        last_save = time.monotonic()
        while not self._shutdown.is_set():
            await asyncio.sleep(0.2)
            self.expire_listen_keys(only_due=True)
            if self.config.state_file is not None and time.monotonic() - last_save >= self.config.state_save_s:
                self.save_state()
                last_save = time.monotonic()

    async def _realtime(self) -> None:
        """The market ticks every second of wall time; between ticks the books update every 100 ms."""
        step_ms = round(BOOK_UPDATE_S * 1000)
        while not self._shutdown.is_set():
            now = self.clock.now_ms()
            if now >= self.market.now_ms + 1000:
                self.market.advance_to(now, self._on_tick)
            else:
                self._on_tick(self.market.refresh_books(now))
            await asyncio.sleep(max(0.01, (step_ms - self.clock.now_ms() % step_ms) / 1000.0))

    def _on_tick(self, info: TickInfo) -> None:
        if not info.book_only:
            for engine in self.engines.values():
                engine.on_tick(info)
        self._publish(info)

    async def advance(self, seconds: float, *, tick_s: float = 1.0) -> None:
        """Move the clock and the market forward (one tick per `tick_s` seconds); triggers and streams run."""
        advance_clock = getattr(self.clock, "advance", None)
        if callable(advance_clock):
            advance_clock(seconds)
        self.market.advance(seconds, self._on_tick, tick_s=tick_s)
        self.expire_listen_keys(only_due=True)
        await asyncio.sleep(0)

    async def set_price(self, symbol: str, price: Decimal, mark: Decimal | None = None) -> None:
        """Set a symbol's last and mark price (mark defaults to last); triggers run, events are pushed."""
        if symbol not in self.market.index:
            raise SimError(-1121, "Invalid symbol.")
        info = self.market.set_price(symbol, Decimal(price), None if mark is None else Decimal(mark))
        self._on_tick(info)
        await asyncio.sleep(0)

    async def set_balance(self, balance: Decimal, api_key: str | None = None) -> None:
        self.engines[api_key or self.api_key].set_balance(Decimal(balance))
        await asyncio.sleep(0)

    def server_time_ms(self) -> int:
        """The time the exchange reports and checks recvWindow against: the clock plus any injected skew."""
        return self.clock.now_ms() + self.faults.clock_skew_ms

    def state(self, api_key: str | None = None) -> dict[str, Any]:
        data = self.engines[api_key or self.api_key].state()
        data["server_time"] = self.clock.now_ms()
        data["market_time"] = self.market.now_ms
        data["faults"] = self.faults.to_json()
        data["listen_keys"] = len(self.listen_keys)
        data["websockets"] = len(self.connections)
        data["stalled_websockets"] = sum(1 for c in self.connections if c.stalled)
        return data

    # ------------------------------------------------------------------------------------- websocket control

    async def disconnect_websockets(self, path: str = "*") -> int:
        """Close every WebSocket whose path matches (fault injection: 'disconnect all now')."""
        victims = [c for c in self.connections if fnmatch.fnmatchcase(c.path, path)]
        for connection in victims:
            connection.queue.put_nowait(None)
        await asyncio.sleep(0)
        return len(victims)

    def send_stream_event(self, stream: str, payload: Mapping[str, Any]) -> int:
        """Push one event on a market stream to its subscribers without changing the market (fault injection:
        a bogus tick the exchange itself never acted on). Returns how many connections got it."""
        receivers = [c for c in self.connections if stream in c.streams and stream_family(stream) == c.family]
        for connection in receivers:
            connection.offer(stream, payload)
        return len(receivers)

    def stall_websockets(self, seconds: float | None, path: str = "*", *, pings: bool = True) -> int:
        """Keep matching sockets open but deliver nothing on them (see `faults.StreamStall`); 0 seconds ends it."""
        return self.apply_stall(StreamStall(path, seconds, pings))

    def apply_stall(self, stall: StreamStall) -> int:
        victims = [c for c in self.connections if fnmatch.fnmatchcase(c.path, stall.path)]
        for connection in victims:
            connection.stall(stall.seconds, pings=stall.pings)
        if victims and stall.seconds != 0:
            log.info("sim fault: websockets stalled", path=stall.path, count=len(victims), pings=stall.pings)
        return len(victims)

    def resume_websockets(self, path: str = "*") -> int:
        """End the stalls of matching sockets: they deliver (and read) again; the lost events stay lost."""
        victims = [c for c in self.connections if fnmatch.fnmatchcase(c.path, path) and (c.stalled or c.deaf)]
        for connection in victims:
            connection.resume()
        return len(victims)

    def expire_listen_keys(self, *, only_due: bool = False, silent: bool = False) -> int:
        """Expire listen keys (all of them, or those past their validity): listenKeyExpired is pushed, unless
        `silent` (then the sockets stay open and simply receive nothing more)."""
        now = self.clock.now_ms()
        expired = [k for k in self.listen_keys.values() if not only_due or now >= k.expires_ms]
        for key in expired:
            del self.listen_keys[key.key]
            event = {"e": "listenKeyExpired", "E": now, "listenKey": key.key}
            for connection in key.connections:
                if not silent:
                    connection.offer(key.key, event)
                connection.streams.discard(key.key)
        return len(expired)

    # ------------------------------------------------------------------------------------- publishing

    def _user_event(self, api_key: str, event: dict[str, Any]) -> None:
        for listen_key in self.listen_keys.values():
            if listen_key.api_key == api_key:
                for connection in listen_key.connections:
                    connection.offer(listen_key.key, event)

    def _publish(self, info: TickInfo) -> None:
        wanted: dict[str, list[Connection]] = {}
        for connection in self.connections:
            if connection.family in ("market", "public"):
                for stream in connection.streams:
                    if stream_family(stream) == connection.family:
                        wanted.setdefault(stream, []).append(connection)
        if not wanted:
            return
        moved = None if info.symbols is None else {self.market.symbols[i] for i in info.symbols}
        due = self.stream_book.due(info, self.clock.now_ms())
        for name, connections in wanted.items():
            parsed = self._streams.get(name)
            if parsed is None:
                continue
            for payload in self.stream_book.payloads(parsed, info, moved, due):
                for connection in connections:
                    connection.offer(name, payload)

    # ------------------------------------------------------------------------------------- ASGI entry

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(WebSocket(scope, receive, send), _transport_of(receive))
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    # ------------------------------------------------------------------------------------- REST

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_URL_BYTES:
            await _too_long(send)
            return
        request = Request(scope, receive)
        path = request.url.path
        if path.startswith("/sim/") or path == "/sim":
            status, body = await self._admin(request)
            await _respond(send, status, body, {})
            return
        method = request.method
        endpoint = self.endpoints.get((method, path))
        ip = scope.get("client", ("127.0.0.1", 0))[0] if scope.get("client") else "127.0.0.1"
        faults = self.faults.take(method, path) if endpoint is not None else []
        if endpoint is None or any(f.kind is FaultKind.NOT_FOUND for f in faults):
            await _respond(send, 404, {"code": -5000, "msg": f"Path {path}, Method {method} is invalid"}, {})
            return
        for fault in faults:
            if fault.kind is FaultKind.LATENCY and fault.latency_ms > 0:
                await asyncio.sleep(fault.latency_ms / 1000.0)
        headers: dict[str, str] = {}
        banned_until = self.limits.ban_check(ip)
        if banned_until is not None:
            retry = max(1, (banned_until - self.clock.now_ms()) // 1000)
            body = {
                "code": -1003,
                "msg": f"Way too many requests; IP({ip}) banned until {banned_until}. "
                "Please use the websocket for live updates to avoid bans.",
            }
            await _respond(send, 418, body, {"Retry-After": str(retry)})
            return
        storm = next((f for f in faults if f.kind is FaultKind.RATE_LIMIT), None)
        raw_body = (await request.body()).decode("utf-8", errors="replace")
        raw_query = request.url.query
        try:
            params = _parse_params(raw_query, raw_body)
        except SimError as exc:
            await _respond(send, exc.http_status, {"code": exc.code, "msg": exc.msg}, headers)
            return
        weight = endpoint.weight(params) if callable(endpoint.weight) else endpoint.weight
        used = self.limits.add_weight(ip, weight)
        headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        if storm is not None or used > self.config.weight_limit:
            await self._too_many(send, ip, headers, storm.retry_after_s if storm is not None else None)
            return
        try:
            engine, api_key = self._authenticate(endpoint, request, params, raw_query, raw_body)
            if endpoint.order and api_key is not None:
                ten, minute = self.limits.order_counts(api_key)
                if ten >= self.config.order_limit_10s or minute >= self.config.order_limit_1m:
                    headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1M"] = str(ten), str(minute)
                    limit, window = (
                        (self.config.order_limit_10s, "TEN_SECONDS")
                        if ten >= self.config.order_limit_10s
                        else (self.config.order_limit_1m, "ONE_MINUTE")
                    )
                    raise SimError(-1015, f"Too many new orders; current limit is {limit} orders per {window}.", 429)
                ten, minute = self.limits.add_order(api_key)
                headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1M"] = str(ten), str(minute)
            failure = next(
                (f for f in faults if f.kind in (FaultKind.UNAVAILABLE, FaultKind.UNKNOWN_ERROR, FaultKind.MALFORMED)),
                None,
            )
            drop = next((f for f in faults if f.kind is FaultKind.DROP_RESPONSE), None)
            result: Any = None
            if failure is None or failure.executes:
                result = endpoint.handler(Call(self, params, engine, api_key))
                if asyncio.iscoroutine(result):
                    result = await result
            if failure is not None and failure.kind is FaultKind.MALFORMED:
                log.info("sim fault: malformed answer", path=path, shape=failure.shape, executed=failure.executes)
                await _malformed(send, failure, result, headers)
                return
            if failure is not None:
                message = UNKNOWN_ERROR_MSG if failure.kind is FaultKind.UNKNOWN_ERROR else UNAVAILABLE_MSG
                code = -1000 if failure.kind is FaultKind.UNKNOWN_ERROR else -1001
                log.info("sim fault: error answer", path=path, kind=str(failure.kind), executed=failure.executes)
                await _respond(send, failure.status, {"code": code, "msg": message}, headers)
                return
            if drop is not None:
                log.info("sim fault: response dropped", path=path, mode=drop.mode)
                await self._drop(send, drop)
                return
            await _respond(send, 200, result, headers)
        except SimError as exc:
            await _respond(send, exc.http_status, {"code": exc.code, "msg": exc.msg}, headers)

    async def _too_many(self, send: Send, ip: str, headers: dict[str, str], retry_after_s: int | None) -> None:
        retry = retry_after_s or self.limits.retry_after_s()
        until = self.limits.record_429(ip, retry)
        body = {
            "code": -1003,
            "msg": f"Too many requests; current limit of IP({ip}) request weight per minute is "
            f"{self.config.weight_limit}. Please use WebSocket Streams for live updates to avoid polling the API.",
        }
        if until is not None:
            log.warning("sim: IP banned after repeated 429s", ip=ip, until=until)
        await _respond(send, 429, body, {**headers, "Retry-After": str(retry)})

    async def _drop(self, send: Send, rule: FaultRule) -> None:
        if rule.mode == "close":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"orderId":', "more_body": True})
            raise ConnectionAbortedError("sim fault: connection dropped mid-response")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shutdown.wait(), rule.hold_s)
        await _respond(send, 503, {"code": -1000, "msg": UNKNOWN_ERROR_MSG}, {})

    def _authenticate(
        self, endpoint: Endpoint, request: Request, params: dict[str, str], raw_query: str, raw_body: str
    ) -> tuple[Engine | None, str | None]:
        api_key = request.headers.get("x-mbx-apikey")
        if endpoint.security == "NONE":
            engine = self.engines.get(api_key) if api_key else None
            return engine, api_key if engine else None
        if not api_key:
            raise SimError(-2014, "API-key format invalid.", 401)
        if api_key not in self.engines:
            raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if endpoint.security == "SIGNED":
            self._verify_signature(api_key, params, raw_query, raw_body)
        return self.engines[api_key], api_key

    def _verify_signature(self, api_key: str, params: dict[str, str], raw_query: str, raw_body: str) -> None:
        timestamp = int_param(params, "timestamp")
        if timestamp is None:
            raise SimError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        recv_window = int_param(params, "recvWindow") or 5000
        if recv_window > 60_000 or recv_window <= 0:
            raise SimError(-1131, "recvWindow must be less than 60000")
        server_time = self.server_time_ms()
        if not (timestamp < server_time + 1000 and server_time - timestamp <= recv_window):
            raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")
        signature = params.get("signature")
        if not signature:
            raise SimError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload = _strip_signature(raw_query) + _strip_signature(raw_body)
        expected = hmac.new(self.config.api_keys[api_key].encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise SimError(-1022, "Signature for this request is not valid.")

    # ------------------------------------------------------------------------------------- endpoint table

    def _endpoints(self) -> list[Endpoint]:
        e = Endpoint
        return [
            e("GET", "/fapi/v1/ping", lambda c: {}),
            e("GET", "/fapi/v1/time", lambda c: {"serverTime": c.sim.server_time_ms()}),
            e("GET", "/fapi/v1/exchangeInfo", _exchange_info),
            e("GET", "/fapi/v1/ticker/24hr", _ticker_24h, _weight_by_symbol(1, 40)),
            e("GET", "/fapi/v1/ticker/price", _ticker_price, _weight_by_symbol(1, 2)),
            e("GET", "/fapi/v2/ticker/price", _ticker_price, _weight_by_symbol(1, 2)),
            e("GET", "/fapi/v1/ticker/bookTicker", _book_ticker, _weight_by_symbol(2, 5)),
            e("GET", "/fapi/v1/klines", _klines, _kline_weight),
            e("GET", "/fapi/v1/premiumIndex", _premium_index, _weight_by_symbol(1, 10)),
            e("GET", "/fapi/v1/fundingRate", _funding_rate),
            e("GET", "/fapi/v1/fundingInfo", lambda c: []),
            e("GET", "/fapi/v1/openInterest", _open_interest),
            e("GET", "/futures/data/openInterestHist", _open_interest_hist, 0),
            e("GET", "/fapi/v1/depth", _depth, _depth_weight),
            e("GET", "/fapi/v1/markPriceKlines", functools.partial(_price_klines, price="mark"), _kline_weight),
            e("GET", "/fapi/v1/indexPriceKlines", functools.partial(_price_klines, price="index"), _kline_weight),
            e("GET", "/fapi/v1/premiumIndexKlines", functools.partial(_price_klines, price="premium"), _kline_weight),
            e("GET", "/fapi/v1/continuousKlines", _continuous_klines, _kline_weight),
            e("GET", "/fapi/v1/aggTrades", _agg_trades, 20),
            e("GET", "/fapi/v1/trades", _trades, 5),
            e("GET", "/fapi/v1/rateLimit/order", _order_rate_limits, 1, "SIGNED"),
            e("GET", "/fapi/v1/apiTradingStatus", _api_trading_status, _weight_by_symbol(1, 10), "SIGNED"),
            e("POST", "/fapi/v1/order/test", lambda c: c.account.new_order(c.params, test=True), 0, "SIGNED"),
            e("POST", "/fapi/v1/batchOrders", lambda c: c.account.batch_orders(c.params), 5, "SIGNED", order=True),
            e("DELETE", "/fapi/v1/batchOrders", lambda c: c.account.cancel_batch(c.params), 1, "SIGNED"),
            e("PUT", "/fapi/v1/order", lambda c: c.account.modify_order(c.params), 1, "SIGNED", order=True),
            e("POST", "/fapi/v1/positionMargin", lambda c: c.account.position_margin(c.params), 1, "SIGNED"),
            e(
                "GET",
                "/fapi/v1/positionMargin/history",
                lambda c: c.account.position_margin_history(c.params),
                1,
                "SIGNED",
            ),
            e(
                "POST",
                "/fapi/v1/countdownCancelAll",
                lambda c: c.account.countdown_cancel_all(c.params),
                10,
                "SIGNED",
            ),
            e(
                "GET",
                "/fapi/v1/forceOrders",
                lambda c: c.account.force_orders(c.params),
                _weight_by_symbol(20, 50),
                "SIGNED",
            ),
            e("GET", "/fapi/v1/adlQuantile", lambda c: c.account.adl_quantile(c.params), 5, "SIGNED"),
            e("GET", "/fapi/v2/account", lambda c: c.account.account_json(2), 5, "SIGNED"),
            e("GET", "/fapi/v3/account", lambda c: c.account.account_json(3), 5, "SIGNED"),
            e("GET", "/fapi/v2/balance", lambda c: c.account.balances_json(), 5, "SIGNED"),
            e("GET", "/fapi/v3/balance", lambda c: c.account.balances_json(), 5, "SIGNED"),
            e("GET", "/fapi/v2/positionRisk", lambda c: c.account.position_risk(c.params, 2), 5, "SIGNED"),
            e("GET", "/fapi/v3/positionRisk", lambda c: c.account.position_risk(c.params, 3), 5, "SIGNED"),
            e("GET", "/fapi/v1/symbolConfig", lambda c: c.account.symbol_config(c.params), 5, "SIGNED"),
            e("GET", "/fapi/v1/accountConfig", _account_config, 5, "SIGNED"),
            e("GET", "/fapi/v1/multiAssetsMargin", lambda c: {"multiAssetsMargin": False}, 30, "SIGNED"),
            e("POST", "/fapi/v1/leverage", lambda c: c.account.change_leverage(c.params), 1, "SIGNED"),
            e("POST", "/fapi/v1/marginType", lambda c: c.account.change_margin_type(c.params), 1, "SIGNED"),
            e("GET", "/fapi/v1/positionSide/dual", lambda c: {"dualSidePosition": c.account.dual_side}, 30, "SIGNED"),
            e("POST", "/fapi/v1/positionSide/dual", lambda c: c.account.change_position_mode(c.params), 1, "SIGNED"),
            e("POST", "/fapi/v1/order", lambda c: c.account.new_order(c.params), 0, "SIGNED", order=True),
            e("GET", "/fapi/v1/order", lambda c: c.account.query_order(c.params), 1, "SIGNED"),
            e("DELETE", "/fapi/v1/order", lambda c: c.account.cancel_order(c.params), 1, "SIGNED"),
            e("GET", "/fapi/v1/openOrder", lambda c: c.account.query_open_order(c.params), 1, "SIGNED"),
            e(
                "GET",
                "/fapi/v1/openOrders",
                lambda c: c.account.open_orders_json(c.params),
                _weight_by_symbol(1, 40),
                "SIGNED",
            ),
            e("GET", "/fapi/v1/allOrders", lambda c: c.account.all_orders(c.params), 5, "SIGNED"),
            e("DELETE", "/fapi/v1/allOpenOrders", lambda c: c.account.cancel_all(c.params), 1, "SIGNED"),
            e("POST", "/fapi/v1/algoOrder", lambda c: c.account.new_algo_order(c.params), 0, "SIGNED", order=True),
            e("GET", "/fapi/v1/algoOrder", lambda c: c.account.query_algo(c.params), 1, "SIGNED"),
            e("DELETE", "/fapi/v1/algoOrder", lambda c: c.account.cancel_algo(c.params), 1, "SIGNED"),
            e(
                "GET",
                "/fapi/v1/openAlgoOrders",
                lambda c: c.account.open_algos_json(c.params),
                _weight_by_symbol(1, 40),
                "SIGNED",
            ),
            e("GET", "/fapi/v1/allAlgoOrders", lambda c: c.account.all_algos(c.params), 5, "SIGNED"),
            e("DELETE", "/fapi/v1/algoOpenOrders", lambda c: c.account.cancel_all_algos(c.params), 1, "SIGNED"),
            e("GET", "/fapi/v1/userTrades", lambda c: c.account.user_trades(c.params), 5, "SIGNED"),
            e("GET", "/fapi/v1/income", lambda c: c.account.income_history(c.params), 30, "SIGNED"),
            e("GET", "/fapi/v1/commissionRate", lambda c: c.account.commission_rate(c.params), 20, "SIGNED"),
            e("GET", "/fapi/v1/leverageBracket", _leverage_bracket, 1, "SIGNED"),
            e("POST", "/fapi/v1/listenKey", _listen_key_create, 1, "USER_STREAM"),
            e("PUT", "/fapi/v1/listenKey", _listen_key_keepalive, 1, "USER_STREAM"),
            e("DELETE", "/fapi/v1/listenKey", _listen_key_close, 1, "USER_STREAM"),
        ]

    # ------------------------------------------------------------------------------------- admin API

    async def _admin(self, request: Request) -> tuple[int, Any]:
        path = request.url.path
        method = request.method
        try:
            body: dict[str, Any] = {}
            if method in ("POST", "PUT", "DELETE"):
                raw = await request.body()
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
            query = dict(request.query_params)
            if path == "/sim/health":
                return 200, {"ok": True, "time": self.clock.now_ms(), "market_time": self.market.now_ms}
            if path == "/sim/state" and method == "GET":
                key = query.get("api_key")
                return 200, self.state(key if key in self.engines else None)
            if path == "/sim/price" and method == "POST":
                mark = body.get("mark")
                await self.set_price(
                    str(body["symbol"]), Decimal(str(body["price"])), Decimal(str(mark)) if mark is not None else None
                )
                quote = self.market.quote(str(body["symbol"]))
                return 200, {"ok": True, "last": str(quote.last), "mark": str(quote.mark)}
            if path == "/sim/advance" and method == "POST":
                await self.advance(float(body.get("seconds", 1)), tick_s=float(body.get("tick_seconds", 1)))
                return 200, {"ok": True, "market_time": self.market.now_ms}
            if path == "/sim/balance" and method == "POST":
                key = body.get("api_key")
                await self.set_balance(Decimal(str(body["balance"])), key if key in self.engines else None)
                return 200, {"ok": True}
            if path == "/sim/faults":
                if method == "GET":
                    return 200, self.faults.to_json()
                if method == "DELETE":
                    self.faults.clear()
                    self.resume_websockets()
                    return 200, self.faults.to_json()
                if method == "POST":
                    rules = [FaultRule.from_json(r) for r in body.get("rules", [])]
                    if body.get("replace", False):
                        self.faults.rules = rules
                    else:
                        self.faults.rules.extend(rules)
                    if "clock_skew_ms" in body:
                        self.faults.clock_skew_ms = int(body["clock_skew_ms"])
                    return 200, self.faults.to_json()
            if path == "/sim/ws/disconnect" and method == "POST":
                return 200, {"closed": await self.disconnect_websockets(str(body.get("path", "*")))}
            if path == "/sim/ws/stall" and method == "POST":
                return 200, {"stalled": self.apply_stall(StreamStall.from_json(body))}
            if path == "/sim/ws/resume" and method == "POST":
                return 200, {"resumed": self.resume_websockets(str(body.get("path", "*")))}
            if path == "/sim/listen-keys/expire" and method == "POST":
                return 200, {"expired": self.expire_listen_keys(silent=bool(body.get("silent", False)))}
            return 404, {"error": f"no admin route {method} {path}"}
        except SimError as exc:
            return exc.http_status, {"code": exc.code, "msg": exc.msg}
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            return 400, {"error": f"bad admin request: {exc!r}"}

    # ------------------------------------------------------------------------------------- websockets

    async def _websocket(self, websocket: WebSocket, transport: asyncio.Transport | None = None) -> None:
        path = websocket.url.path
        parts = [p for p in path.split("/") if p]
        query = dict(websocket.query_params)
        family: Literal["market", "public", "private", "legacy"]
        if parts and parts[0] in ("market", "public", "private"):
            family = parts[0]  # type: ignore[assignment]
            parts = parts[1:]
        elif parts and parts[0] in ("ws", "stream"):
            family = "legacy"
        else:
            await websocket.close(code=1008)
            return
        if not parts or parts[0] not in ("ws", "stream"):
            await websocket.close(code=1008)
            return
        combined = parts[0] == "stream"
        streams = [s for s in query.get("streams", "").split("/") if s] if combined else parts[1:]
        if family == "private" and not combined and not streams and query.get("listenKey"):
            streams = [query["listenKey"]]
        if family == "private" and any(s not in self.listen_keys for s in streams):
            await websocket.close(code=1008)
            return
        connection = Connection(websocket, family, combined, path, transport=transport)
        if family != "private":
            streams = [s for s in streams if s not in self._placeholders(streams)]
        try:
            self._check_streams(connection, streams)
        except StreamError as exc:
            log.info("sim websocket refused: stream not served", path=path, reason=str(exc))
            await websocket.close(code=1008, reason=str(exc)[:120])
            return
        await websocket.accept()
        self.connections.add(connection)
        self._subscribe(connection, streams)
        sender = asyncio.create_task(self._ws_sender(connection))
        try:
            while True:
                message = await websocket.receive_text()
                if connection.deaf:  # read before the stall began; uvicorn resumed reading to hand it over
                    if connection.transport is not None:
                        connection.transport.pause_reading()
                    continue
                reply = self._ws_request(connection, message)
                if reply is not None:
                    connection.queue.put_nowait(json.dumps(reply))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._unsubscribe(connection, set(connection.streams))
            self.connections.discard(connection)
            connection.resume()
            connection.queue.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    async def _ws_sender(self, connection: Connection) -> None:
        websocket = connection.websocket
        try:
            while True:
                message = await connection.queue.get()
                if message is None:
                    break
                await websocket.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        if websocket.client_state is WebSocketState.CONNECTED:
            try:
                await websocket.close(code=1000)
            except (RuntimeError, OSError):
                return

    def _check_streams(self, connection: Connection, streams: list[str]) -> None:
        """StreamError for the first market stream name the sim cannot serve (nothing is subscribed then)."""
        for stream in streams:
            if connection.family != "private" and stream not in self.listen_keys:
                parse_stream(stream, self.market)

    @staticmethod
    def _placeholders(streams: list[str]) -> list[str]:
        """Path segments that name no stream at all (ccxt.pro connects to /ws/0, then SUBSCRIBEs): Binance
        accepts the connection, so the sim drops them instead of refusing it."""
        return [s for s in streams if "@" not in s and not s.startswith("!")]

    def _subscribe(self, connection: Connection, streams: list[str]) -> None:
        for stream in streams:
            if connection.family == "private" or stream in self.listen_keys:
                key = self.listen_keys.get(stream)
                if key is not None:
                    key.connections.add(connection)
                    connection.streams.add(stream)
                continue
            parsed = parse_stream(stream, self.market)
            self._streams[parsed.name] = parsed
            if stream_family(parsed.name) == connection.family:
                self.stream_book.prime(parsed)
            connection.streams.add(parsed.name)

    def _unsubscribe(self, connection: Connection, streams: set[str]) -> None:
        for stream in streams:
            key = self.listen_keys.get(stream)
            if key is not None:
                key.connections.discard(connection)
            connection.streams.discard(stream)

    def _ws_request(self, connection: Connection, message: str) -> dict[str, Any] | None:
        """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS; malformed frames get Binance's error reply (codes 2 and 3 and
        their words from the "Live Subscribing/Unsubscribing" page's error table; "invalid stream" as Binance refuses
        a malformed name). Binance acknowledges a well-formed name it has no stream for and stays silent; the sim
        refuses every name it cannot serve, so a bot cannot mistake it for a stalled stream."""
        try:
            request = json.loads(message)
        except ValueError:
            return {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}}
        if not isinstance(request, dict):
            return {"error": {"code": 3, "msg": "Invalid JSON"}}
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return {"error": {"code": 2, "msg": "Invalid request: params must be a list of strings"}, "id": request_id}
        if method == "SUBSCRIBE":
            try:
                self._check_streams(connection, params)
            except StreamError as exc:
                return {"error": {"code": 2, "msg": f"Invalid request: invalid stream ({exc})"}, "id": request_id}
            self._subscribe(connection, params)
            return {"result": None, "id": request_id}
        if method == "UNSUBSCRIBE":
            self._unsubscribe(connection, {_normalise_stream(p) for p in params})
            return {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(connection.streams), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return {"result": None if method == "SET_PROPERTY" else False, "id": request_id}
        expected = "expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
        unknown = f"Invalid request: unknown variant `{method}`, {expected}"
        return {"error": {"code": 2, "msg": unknown}, "id": request_id}


# ---------------------------------------------------------------------------------------------- helpers


async def _malformed(send: Send, rule: FaultRule, result: Any, headers: Mapping[str, str]) -> None:
    """An answer of the given shape instead of the real one (which, when executed, happened all the same)."""
    if rule.shape == "html":
        page = f"<html><head><title>{rule.status} Bad Gateway</title></head><body>cloudfront</body></html>"
        raw = page.encode()
        response_headers = [(b"content-type", b"text/html"), (b"content-length", str(len(raw)).encode())]
        await send({"type": "http.response.start", "status": rule.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": raw})
        return
    if rule.shape == "empty":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    kept = dict(list(result.items())[:1]) if isinstance(result, dict) else {}
    await _respond(send, 200, kept, headers)


async def _too_long(send: Send) -> None:
    """414 as the CDN in front of Binance answers an over-long URL: an HTML page, not a Binance error."""
    page = b"<html><head><title>414 Request-URI Too Large</title></head><body>Request-URI Too Large</body></html>"
    headers = [(b"content-type", b"text/html"), (b"content-length", str(len(page)).encode())]
    await send({"type": "http.response.start", "status": 414, "headers": headers})
    await send({"type": "http.response.body", "body": page})


def _transport_of(receive: Receive) -> asyncio.Transport | None:
    """The socket under a WebSocket, to stop reading it: ASGI has no way to reach it, but uvicorn's `receive` is
    a method of its protocol object, which holds the transport (None under another server: no black holes)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None


async def _respond(send: Send, status: int, body: Any, headers: Mapping[str, str]) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def _parse_params(raw_query: str, raw_body: str) -> dict[str, str]:
    """Query string and form body merged (Binance accepts both); a parameter twice is -1101."""
    params: dict[str, str] = {}
    for source in (raw_query, raw_body):
        if not source:
            continue
        if source.lstrip().startswith("{"):
            raise SimError(-1100, "Illegal characters found in a parameter (send form-encoded parameters).")
        for key, value in parse_qsl(source, keep_blank_values=True):
            if key in params:
                raise SimError(-1101, f"Duplicate values for parameter '{key}'.")
            params[key] = value
    return params


def _strip_signature(raw: str) -> str:
    """The signed bytes: the part before '&signature=' (the signature is the last parameter)."""
    if raw.startswith("signature="):
        return ""
    index = raw.find("&signature=")
    return raw if index < 0 else raw[:index]


def _symbols_param(call: Call) -> list[str]:
    symbol = param(call.params, "symbol")
    market = call.sim.market
    if symbol is None:
        return [s for s in market.symbols if market.is_listed(s)]
    if symbol not in market.index or not market.is_listed(symbol):
        raise SimError(-1121, "Invalid symbol.")
    return [symbol]


def _one_or_all(call: Call, build: Callable[[str], dict[str, Any]]) -> Any:
    rows = [build(s) for s in _symbols_param(call)]
    return rows[0] if param(call.params, "symbol") is not None else rows


def _exchange_info(call: Call) -> dict[str, Any]:
    engine = call.engine or call.sim.engine
    market = call.sim.market
    symbols = []
    for spec in market.specs:
        f = engine.filters[spec.symbol]
        symbols.append({
            "symbol": spec.symbol, "pair": spec.symbol.split("_")[0], "contractType": spec.contract_type,
            "deliveryDate": spec.delivery_date_ms, "onboardDate": market.onboard_date_ms(spec.symbol),
            "status": "TRADING" if market.is_listed(spec.symbol) else "PENDING_TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": spec.base_asset, "quoteAsset": spec.quote_asset,
            "marginAsset": "USDT", "pricePrecision": f.price_precision, "quantityPrecision": f.quantity_precision,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": str(f.min_price), "maxPrice": str(f.max_price),
                 "tickSize": str(f.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": str(f.min_qty), "maxQty": str(f.max_qty),
                 "stepSize": str(f.step_size)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": str(f.market_min_qty), "maxQty": str(f.market_max_qty),
                 "stepSize": str(f.market_step_size)},
                {"filterType": "MAX_NUM_ORDERS", "limit": f.max_num_orders},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": f.max_num_algo_orders},
                {"filterType": "MIN_NOTIONAL", "notional": str(f.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": str(f.multiplier_up),
                 "multiplierDown": str(f.multiplier_down), "multiplierDecimal": "4"},
                {"filterType": "POSITION_RISK_CONTROL", "positionControlSide": "NONE"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        })  # fmt: skip
    return {
        "timezone": "UTC",
        "serverTime": call.sim.server_time_ms(),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": call.sim.config.weight_limit,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": call.sim.config.order_limit_1m,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": call.sim.config.order_limit_10s,
            },
        ],
        "exchangeFilters": [],
        "assets": [
            {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
            {"asset": "USDC", "marginAvailable": True, "autoAssetExchange": "-10000"},
            {"asset": "BNB", "marginAvailable": True, "autoAssetExchange": "-10000"},
        ],
        "symbols": symbols,
    }


def _ticker_24h(call: Call) -> Any:
    return _one_or_all(call, call.sim.market.ticker_24h)


def _ticker_price(call: Call) -> Any:
    market = call.sim.market
    return _one_or_all(
        call,
        lambda s: {"symbol": s, "price": str(market.quote(s).last), "time": market.now_ms},
    )


def _book_ticker(call: Call) -> Any:
    market = call.sim.market

    def build(symbol: str) -> dict[str, Any]:
        event = market.book_ticker_event(symbol)
        return {
            "symbol": symbol, "bidPrice": event["b"], "bidQty": event["B"], "askPrice": event["a"],
            "askQty": event["A"], "time": market.now_ms, "lastUpdateId": event["u"],
        }  # fmt: skip

    return _one_or_all(call, build)


def _premium_index(call: Call) -> Any:
    return _one_or_all(call, call.sim.market.premium_index)


def _interval(params: Mapping[str, str]) -> str:
    interval = required(params, "interval")
    if interval not in KLINE_INTERVALS:
        raise SimError(-1120, "Invalid interval.")
    return interval


def _klines(call: Call) -> list[list[Any]]:
    return _kline_page(call, _symbols_param_required(call), "last")


def _price_klines(call: Call, *, price: str) -> list[list[Any]]:
    """markPriceKlines / premiumIndexKlines (symbol) and indexPriceKlines (pair): same paging as klines."""
    name = "pair" if price == "index" else "symbol"
    symbol = required(call.params, name)
    if symbol not in call.sim.market.index or not call.sim.market.is_listed(symbol):
        raise SimError(-1121, "Invalid symbol.")
    return _kline_page(call, symbol, price)


def _continuous_klines(call: Call) -> list[list[Any]]:
    pair = required(call.params, "pair")
    contract = required(call.params, "contractType")
    if contract not in ("PERPETUAL", "CURRENT_QUARTER", "NEXT_QUARTER"):
        raise SimError(-1130, "Data sent for parameter 'contractType' is not valid.")
    market = call.sim.market
    if contract != "PERPETUAL" or pair not in market.index or not market.is_listed(pair):
        raise SimError(-1121, "Invalid symbol.")
    return _kline_page(call, pair, "last")


def _kline_page(call: Call, symbol: str, price: str) -> list[list[Any]]:
    interval = _interval(call.params)
    limit = limit_param(call.params, 500, 1500)
    start, end = int_param(call.params, "startTime"), int_param(call.params, "endTime")
    try:
        return call.sim.market.kline_rows(symbol, interval, start_ms=start, end_ms=end, limit=limit, price=price)
    except ValueError:
        raise SimError(-1120, "Invalid interval.") from None


def _agg_trades(call: Call) -> list[dict[str, Any]]:
    symbol = _symbols_param_required(call)
    start, end = int_param(call.params, "startTime"), int_param(call.params, "endTime")
    if start is not None and end is not None and end - start > 3_600_000:
        raise SimError(-1127, "More than 1 hours between startTime and endTime.")
    return call.sim.market.agg_trades(
        symbol,
        from_id=int_param(call.params, "fromId"),
        start_ms=start,
        end_ms=end,
        limit=limit_param(call.params, 500, 1000),
    )


def _trades(call: Call) -> list[dict[str, Any]]:
    return call.sim.market.recent_trades(_symbols_param_required(call), limit_param(call.params, 500, 1000))


def _order_rate_limits(call: Call) -> list[dict[str, Any]]:
    config = call.sim.config
    return [
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": config.order_limit_10s},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": config.order_limit_1m},
    ]


def _api_trading_status(call: Call) -> dict[str, Any]:
    """No quantitative-rules indicators: the sim never locks an account for its order patterns."""
    symbol = param(call.params, "symbol")
    if symbol is not None:
        call.account.spec(symbol)
    return {"indicators": {}, "updateTime": call.sim.clock.now_ms()}


def _symbols_param_required(call: Call) -> str:
    required(call.params, "symbol")
    return _symbols_param(call)[0]


def _funding_rate(call: Call) -> list[dict[str, Any]]:
    symbols = _symbols_param(call)
    limit = limit_param(call.params, 100, 1000)
    start, end = int_param(call.params, "startTime"), int_param(call.params, "endTime")
    rows: list[dict[str, Any]] = []
    for symbol in symbols:
        rows.extend(call.sim.market.funding_rate_history(symbol, start_ms=start, end_ms=end, limit=limit))
    rows.sort(key=lambda r: int(r["fundingTime"]))
    return rows[:limit] if start is not None else rows[-limit:]


def _open_interest(call: Call) -> dict[str, Any]:
    return call.sim.market.open_interest_now(_symbols_param_required(call))


def _open_interest_hist(call: Call) -> list[dict[str, Any]]:
    symbol = _symbols_param_required(call)
    period = required(call.params, "period")
    if period not in OI_PERIODS:
        raise SimError(-1130, "Data sent for parameter 'period' is not valid.")
    limit = limit_param(call.params, 30, 500)
    start, end = int_param(call.params, "startTime"), int_param(call.params, "endTime")
    return call.sim.market.open_interest_hist(symbol, period, start_ms=start, end_ms=end, limit=limit)


def _depth(call: Call) -> dict[str, Any]:
    symbol = _symbols_param_required(call)
    limit = int_param(call.params, "limit") or 500
    if limit not in (5, 10, 20, 50, 100, 500, 1000):
        raise SimError(-1130, "Data sent for parameter 'limit' is not valid.")
    market = call.sim.market
    book = market.book_arrays(symbol, limit)
    return {
        "lastUpdateId": book.update_id,
        "E": market.book_time_ms,
        "T": market.book_time_ms,
        "bids": wire_levels(market, symbol, book.bid_ticks.tolist(), book.bid_steps.tolist()),
        "asks": wire_levels(market, symbol, book.ask_ticks.tolist(), book.ask_steps.tolist()),
    }


def _account_config(call: Call) -> dict[str, Any]:
    return {
        "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "dualSidePosition":
        call.account.dual_side, "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1,
    }  # fmt: skip


def _leverage_bracket(call: Call) -> Any:
    engine = call.account
    symbol = param(call.params, "symbol")
    symbols = [engine.spec(symbol).symbol] if symbol else list(engine.specs)

    def build(s: str) -> dict[str, Any]:
        return {
            "symbol": s,
            "notionalCoef": 1.0,
            "brackets": [
                {
                    "bracket": b.bracket, "initialLeverage": b.initial_leverage, "notionalCap": int(b.notional_cap),
                    "notionalFloor": int(b.notional_floor), "maintMarginRatio": float(b.maint_margin_ratio),
                    "cum": float(b.cum),
                }
                for b in engine.specs[s].brackets
            ],
        }  # fmt: skip

    rows = [build(s) for s in symbols]
    return rows[0] if symbol else rows


def _listen_key_create(call: Call) -> dict[str, Any]:
    sim = call.sim
    assert call.api_key is not None
    expires = sim.clock.now_ms() + round(sim.config.listen_key_ttl_s * 1000)
    for key in sim.listen_keys.values():
        if key.api_key == call.api_key:
            key.expires_ms = expires
            return {"listenKey": key.key}
    token = secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")[:64]
    sim.listen_keys[token] = ListenKey(token, call.api_key, expires)
    return {"listenKey": token}


def _own_listen_key(call: Call) -> ListenKey:
    wanted = param(call.params, "listenKey")
    for key in call.sim.listen_keys.values():
        if key.api_key == call.api_key and (wanted is None or key.key == wanted):
            return key
    raise SimError(-1125, "This listenKey does not exist.")


def _listen_key_keepalive(call: Call) -> dict[str, Any]:
    key = _own_listen_key(call)
    key.expires_ms = call.sim.clock.now_ms() + round(call.sim.config.listen_key_ttl_s * 1000)
    return {"listenKey": key.key}


def _listen_key_close(call: Call) -> dict[str, Any]:
    key = _own_listen_key(call)
    del call.sim.listen_keys[key.key]
    for connection in key.connections:
        connection.streams.discard(key.key)
    return {}


# ---------------------------------------------------------------------------------------------- threads


class SimControl:
    """A small synchronous client for the /sim/ admin API (tests and scripts in other threads/processes)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s)

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = self._client.post(path, content=json.dumps(body, default=str))
        response.raise_for_status()
        return response.json()

    def set_price(self, symbol: str, price: Decimal | str, mark: Decimal | str | None = None) -> None:
        body: dict[str, Any] = {"symbol": symbol, "price": str(price)}
        if mark is not None:
            body["mark"] = str(mark)
        self._post("/sim/price", body)

    def advance(self, seconds: float, *, tick_seconds: float = 1.0) -> None:
        """Move the market forward; `tick_seconds` > 1 moves a long way in fewer, coarser ticks."""
        self._post("/sim/advance", {"seconds": seconds, "tick_seconds": tick_seconds})

    def state(self, api_key: str | None = None) -> dict[str, Any]:
        response = self._client.get("/sim/state", params={"api_key": api_key} if api_key else None)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def set_balance(self, balance: Decimal | str, api_key: str | None = None) -> None:
        self._post("/sim/balance", {"balance": str(balance), "api_key": api_key})

    def set_faults(self, rules: list[dict[str, Any]] | None = None, *, clock_skew_ms: int | None = None,
                   replace: bool = True) -> dict[str, Any]:  # fmt: skip
        """Install fault rules (see sim.faults.FaultRule for the fields); replaces the current ones."""
        body: dict[str, Any] = {"rules": rules or [], "replace": replace}
        if clock_skew_ms is not None:
            body["clock_skew_ms"] = clock_skew_ms
        result: dict[str, Any] = self._post("/sim/faults", body)
        return result

    def add_fault(self, kind: str, **options: Any) -> dict[str, Any]:
        return self.set_faults([{"kind": kind, **options}], replace=False)

    def clear_faults(self) -> None:
        self._client.delete("/sim/faults").raise_for_status()

    def disconnect_websockets(self, path: str = "*") -> int:
        return int(self._post("/sim/ws/disconnect", {"path": path})["closed"])

    def stall_websockets(self, seconds: float | None, path: str = "*", *, pings: bool = True) -> int:
        return int(self._post("/sim/ws/stall", {"seconds": seconds, "path": path, "pings": pings})["stalled"])

    def resume_websockets(self, path: str = "*") -> int:
        return int(self._post("/sim/ws/resume", {"path": path})["resumed"])

    def expire_listen_keys(self, *, silent: bool = False) -> int:
        return int(self._post("/sim/listen-keys/expire", {"silent": silent})["expired"])

    def close(self) -> None:
        self._client.close()


class SimServerThread:
    """The same server in a background thread with its own event loop, for synchronous callers."""

    def __init__(self, config: SimConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimConfig()
        self._clock = clock
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: SimServer | None = None
        self.control: SimControl

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sim-exchange", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            raise RuntimeError("the simulated exchange failed to start") from self._error
        if self.server is None:
            raise RuntimeError("the simulated exchange did not start within 30 s")
        self.control = SimControl(self.rest_url)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                server = SimServer(self.config, self._clock)
                await server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self.server = server
            self._ready.set()
            await self._stop.wait()
            await server.stop()

        try:
            asyncio.run(main())
        except Exception:
            log.exception("sim exchange thread stopped with an error")

    def call(self, function: Callable[[SimServer], Coroutine[Any, Any, Any]]) -> Any:
        """Run `await function(server)` on the server's loop and return its result (thread-safe)."""
        assert self._loop is not None
        assert self.server is not None
        return asyncio.run_coroutine_threadsafe(function(self.server), self._loop).result(timeout=60)

    def stop(self) -> None:
        """Stop the exchange (again: nothing)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        if hasattr(self, "control"):
            self.control.close()

    def _server(self) -> SimServer:
        if self.server is None:
            raise RuntimeError("the simulated exchange is not running")
        return self.server

    @property
    def rest_url(self) -> str:
        return self._server().rest_url

    @property
    def ws_url(self) -> str:
        return self._server().ws_url

    @property
    def api_key(self) -> str:
        return self._server().api_key

    @property
    def api_secret(self) -> str:
        return self._server().api_secret


__all__ = ["OffsetClock", "SimConfig", "SimControl", "SimServer", "SimServerThread"]
