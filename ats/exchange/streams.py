"""Binance USDⓈ-M WebSocket streams that survive anything: market data and the account's user stream.

Each socket reconnects forever with capped, jittered exponential back-off (a long outage degrades, it never
ends the stream), sends WebSocket pings and drops a connection whose pong does not come within the ping
interval (a dead or black-holed socket), answers the server's pings (the websockets library does both), treats
silence longer than `stale_after_s` as a dead connection where silence means something (market data flows every
second; an idle account's user stream may say nothing for hours, so it has no such limit), and after every
reconnect emits a `StreamGap` so the consumer can fill the gap over REST. Frames are parsed into the events of
ats.exchange.base; unknown fields and event types are ignored, malformed frames are logged and skipped.

URL layout since 2026-04-23: bookTicker and depth streams live under /public, the other market streams
under /market, the user stream under /private/ws/<listenKey>. An old-style URL connects and then stays
silent, which the staleness watchdog would report over and over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ats.clock import Clock, WallClock
from ats.exchange import parse
from ats.exchange.base import ListenKeyExpired, MarketEvent, StreamGap, StreamHealth, UserEvent
from ats.exchange.binance import quiet_transport_loggers
from ats.exchange.errors import ExchangeError
from ats.log import get_logger

if TYPE_CHECKING:
    from ats.config import Settings

log = get_logger(__name__)

Ev = TypeVar("Ev", MarketEvent, UserEvent)

MAX_STREAMS_PER_CONNECTION = 1024
STREAMS_IN_URL = 100  # the rest is subscribed by message, keeping the URL short
STREAMS_PER_MESSAGE = 100
PUBLIC_STREAM_TYPES = ("bookTicker", "depth")
USER_PING_INTERVAL_S = 10.0  # the user stream's liveness: a pong missing for this long after a ping drops it


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential back-off with 'equal jitter': half of the step is fixed, half random.

    Reconnecting clients spread out instead of stampeding, and the delay never collapses to zero.
    """
    step = min(max_s, initial_s * 2.0 ** min(attempt, 32))
    return step / 2 + rng.uniform(0.0, step / 2)


def normalize_stream(name: str) -> str:
    """Symbols are lower case in stream names; the stream type keeps its case (btcusdt@markPrice@1s).

    All-market streams ("!markPrice@arr@1s") have no symbol part and stay as they are.
    """
    name = name.strip()
    if name.startswith("!"):
        return name
    symbol, sep, rest = name.partition("@")
    return f"{symbol.lower()}{sep}{rest}"


def stream_path(name: str) -> str:
    """'public' for order-book streams (bookTicker, depth), 'market' for everything else."""
    _, _, kind = name.partition("@")
    if not kind:  # "!bookTicker" has no symbol part
        kind = name.lstrip("!")
    return "public" if kind.startswith(PUBLIC_STREAM_TYPES) else "market"


class _Stale(Exception):
    """No frame within `stale_after_s`: the connection is treated as dead."""


class _EventQueue(Generic[Ev]):
    """Events for one consumer. A bounded queue drops its oldest event when full (market data only)."""

    _CLOSED: Any = object()

    def __init__(self, maxsize: int = 0) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, event: Ev) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("stream consumer too slow: dropped market events", dropped=self.dropped)
        self._queue.put_nowait(event)

    def close(self) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(self._CLOSED)

    async def __aiter__(self) -> AsyncIterator[Ev]:
        while True:
            item = await self._queue.get()
            if item is self._CLOSED:
                self._queue.put_nowait(self._CLOSED)  # every other iterator ends too
                return
            yield item


class _Socket(ABC):
    """One WebSocket that reconnects forever. Subclasses say where to connect and what a frame means."""

    def __init__(
        self,
        *,
        name: str,
        clock: Clock,
        stale_after_s: float | None,
        backoff_initial_s: float,
        backoff_max_s: float,
        ping_interval_s: float | None,
        rng: random.Random,
        on_gap: Callable[[StreamGap], None],
    ) -> None:
        quiet_transport_loggers()
        self.name = name
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._ping_interval_s = ping_interval_s
        self._rng = rng
        self._on_gap = on_gap
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._closing = False
        self._ever_connected = False
        self._replace_reason: str | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.last_message_ms: int | None = None
        self.connected_since_ms: int | None = None

    # ---- hooks
    @abstractmethod
    async def url(self) -> str:
        """Where to connect now (called before every connection attempt)."""

    @abstractmethod
    async def on_connected(self) -> None:
        """Called once per connection before frames are read."""

    @abstractmethod
    def on_message(self, message: Any) -> None:
        """One decoded JSON frame; raise parse.MalformedPayload to have it logged and skipped."""

    @abstractmethod
    def on_disconnected(self) -> None:
        """Called after every connection ends."""

    # ---- lifecycle
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"ws-{self.name}")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def replace_connection(self, reason: str) -> None:
        """Drop the current connection; the run loop reconnects (and emits a StreamGap)."""
        ws = self._ws
        if ws is not None:
            log.info("replacing stream connection", stream=self.name, reason=reason)
            self._replace_reason = reason
            ws.transport.abort()

    def _stopping(self) -> bool:
        """`stop()` sets the flag while `_run` awaits; read through a call so the type checker does not
        assume it unchanged since the loop condition."""
        return self._closing

    async def send_json(self, payload: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(payload))
        except ConnectionClosed:
            return False
        return True

    async def _run(self) -> None:
        attempt = 0
        down_since_ms: int | None = None
        reason = ""
        while not self._stopping():
            opened_at: float | None = None
            try:
                url = await self.url()
                async with connect(
                    url,
                    proxy=None,
                    open_timeout=10,
                    ping_interval=self._ping_interval_s,
                    ping_timeout=self._ping_interval_s,
                    close_timeout=2,
                    max_size=16 * 1024 * 1024,
                    max_queue=1024,
                    user_agent_header="ats/0.1",
                ) as ws:
                    self._ws = ws
                    self._replace_reason = None
                    opened_at = self._clock.monotonic()
                    now = self._clock.now_ms()
                    self.connected_since_ms = now
                    self.last_message_ms = None
                    await self.on_connected()
                    self.connected.set()
                    if self._ever_connected and down_since_ms is not None:
                        self.reconnects += 1
                        log.info("stream reconnected", stream=self.name, reason=reason, reconnects=self.reconnects)
                        self._on_gap(StreamGap(self.name, down_since_ms, now, reason))
                    self._ever_connected = True
                    down_since_ms = None
                    reason = await self._read(ws)
            except asyncio.CancelledError:
                raise
            except ConnectionClosed as exc:
                reason = f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            except InvalidStatus as exc:
                reason = f"handshake refused (HTTP {exc.response.status_code})"
            except (InvalidHandshake, InvalidURI) as exc:
                reason = f"handshake failed ({type(exc).__name__})"
            except (OSError, TimeoutError) as exc:
                reason = f"cannot connect ({type(exc).__name__})"
            except ExchangeError as exc:
                reason = f"exchange error before connecting: {exc}"
            except Exception as exc:  # a stream must outlive any bug in one frame or hook
                log.exception("stream connection failed unexpectedly", stream=self.name)
                reason = f"unexpected {type(exc).__name__}"
            finally:
                self._ws = None
                self.connected.clear()
                if opened_at is not None:
                    self.on_disconnected()
            if self._stopping():
                return
            if opened_at is not None:
                reason = self._replace_reason or reason
                lived_s = self._clock.monotonic() - opened_at
                if self.last_message_ms is not None or lived_s >= self._backoff_max_s:
                    attempt = 0  # it worked for a while: start the back-off from the bottom again
            if down_since_ms is None:
                down_since_ms = self.last_message_ms or self.connected_since_ms or self._clock.now_ms()
            delay = backoff_delay(attempt, initial_s=self._backoff_initial_s, max_s=self._backoff_max_s, rng=self._rng)
            attempt += 1
            log.warning("stream down, reconnecting", stream=self.name, reason=reason, retry_in_s=round(delay, 2))
            await self._clock.sleep(delay)

    async def _read(self, ws: ClientConnection) -> str:
        """Read frames until the connection ends; returns why it ended (no silence limit without `stale_after_s`)."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self._stale_after_s):
                        raw = await ws.recv()
                except TimeoutError:
                    raise _Stale from None
                self.last_message_ms = self._clock.now_ms()
                self._handle(raw)
        except _Stale:
            ws.transport.abort()  # a stalled peer would not answer a close handshake either
            return f"no message for {self._stale_after_s:g} s"
        except ConnectionClosed as exc:
            return f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"

    def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("skipping a frame that is not JSON", stream=self.name, size=len(raw))
            return
        try:
            self.on_message(message)
        except parse.MalformedPayload as exc:
            log.warning("skipping a malformed frame", stream=self.name, error=str(exc))
        except Exception:
            log.exception("skipping a frame that failed to process", stream=self.name)


# ---------------------------------------------------------------------------------------------- market data


class _MarketSocket(_Socket):
    """One /public or /market connection carrying up to 1024 streams."""

    def __init__(
        self, *, base_url: str, path: str, out: _EventQueue[MarketEvent], control_interval_s: float, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._base_url = base_url
        self._out = out
        self._control_interval_s = control_interval_s
        self.path = path
        self.desired: set[str] = set()
        self._active: set[str] = set()
        self._sync_lock = asyncio.Lock()
        self._next_id = 1
        self._last_control = -1e9

    async def url(self) -> str:
        first = sorted(self.desired)[:STREAMS_IN_URL]
        self._active = set(first)
        return f"{self._base_url}/{self.path}/stream?streams={'/'.join(first)}"

    async def on_connected(self) -> None:
        await self.sync()

    def on_disconnected(self) -> None:
        self._active = set()

    async def sync(self) -> None:
        """Bring the live subscriptions in line with `desired` (SUBSCRIBE/UNSUBSCRIBE, paced)."""
        async with self._sync_lock:
            if self._ws is None:
                return
            for method, names in (
                ("UNSUBSCRIBE", sorted(self._active - self.desired)),
                ("SUBSCRIBE", sorted(self.desired - self._active)),
            ):
                for start in range(0, len(names), STREAMS_PER_MESSAGE):
                    batch = names[start : start + STREAMS_PER_MESSAGE]
                    await self._pace()
                    if not await self.send_json({"method": method, "params": batch, "id": self._next_id}):
                        return  # the connection is gone; the next one starts from `desired`
                    self._next_id += 1
                    if method == "SUBSCRIBE":
                        self._active.update(batch)
                    else:
                        self._active.difference_update(batch)

    async def _pace(self) -> None:
        """Binance accepts at most 10 incoming messages per second per connection; stay well below."""
        wait = self._last_control + self._control_interval_s - self._clock.monotonic()
        if wait > 0:
            await self._clock.sleep(wait)
        self._last_control = self._clock.monotonic()

    def on_message(self, message: Any) -> None:
        if isinstance(message, dict) and "id" in message and ("result" in message or "error" in message):
            if message.get("error"):
                log.warning("subscription request refused", stream=self.name, error=str(message["error"])[:200])
            return
        payload = message.get("data") if isinstance(message, dict) and "stream" in message else message
        for event in parse.market_events(payload):
            self._out.put(event)


class BinanceMarketStream:
    """Combined market-data streams, routed to /public or /market, sharded at 1024 streams per connection."""

    def __init__(
        self,
        ws_url: str,
        *,
        clock: Clock | None = None,
        stale_after_s: float = 30.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        ping_interval_s: float | None = 20.0,
        max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
        control_messages_per_s: float = 5.0,
        queue_size: int = 100_000,
        rng: random.Random | None = None,
    ) -> None:
        self._ws_url = ws_url.rstrip("/")
        self._clock = clock or WallClock()
        self._options: dict[str, Any] = {
            "clock": self._clock,
            "stale_after_s": stale_after_s,
            "backoff_initial_s": backoff_initial_s,
            "backoff_max_s": backoff_max_s,
            "ping_interval_s": ping_interval_s,
            "rng": rng or random.Random(),
        }
        self._max_streams = max(1, min(max_streams_per_connection, MAX_STREAMS_PER_CONNECTION))
        self._control_interval_s = 1.0 / control_messages_per_s
        self._out: _EventQueue[MarketEvent] = _EventQueue(queue_size)
        self._sockets: list[_MarketSocket] = []
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> BinanceMarketStream:
        return cls(settings.ws_url, clock=clock, stale_after_s=settings.monitor.stream_stale_after_s)

    @property
    def streams(self) -> frozenset[str]:
        return frozenset(name for socket in self._sockets for name in socket.desired)

    async def subscribe(self, streams: list[str]) -> None:
        async with self._lock:
            touched: set[int] = set()
            current = self.streams
            for name in dict.fromkeys(normalize_stream(s) for s in streams):
                if name in current:
                    continue
                socket = self._socket_with_room(stream_path(name))
                socket.desired.add(name)
                touched.add(id(socket))
            for socket in self._sockets:
                if id(socket) in touched:
                    if socket.running:
                        await socket.sync()
                    else:
                        socket.start()

    async def unsubscribe(self, streams: list[str]) -> None:
        async with self._lock:
            names = {normalize_stream(s) for s in streams}
            for socket in self._sockets:
                if socket.desired & names:
                    socket.desired -= names
                    if socket.desired:
                        await socket.sync()
                    else:
                        await socket.stop()

    def _socket_with_room(self, path: str) -> _MarketSocket:
        for socket in self._sockets:
            if socket.path == path and len(socket.desired) < self._max_streams:
                return socket
        index = sum(1 for s in self._sockets if s.path == path)
        socket = _MarketSocket(
            base_url=self._ws_url,
            path=path,
            out=self._out,
            control_interval_s=self._control_interval_s,
            name=f"market:{path}:{index}",
            on_gap=self._gap,
            **self._options,
        )
        self._sockets.append(socket)
        return socket

    def _gap(self, gap: StreamGap) -> None:
        self._out.put(StreamGap("market", gap.down_since_ms, gap.reconnected_at_ms, f"{gap.stream}: {gap.reason}"))

    def events(self) -> AsyncIterator[MarketEvent]:
        return self._out.__aiter__()

    async def wait_connected(self, timeout_s: float) -> bool:
        """True once every connection with streams is up (False after `timeout_s`)."""
        try:
            async with asyncio.timeout(timeout_s):
                for socket in self._sockets:
                    if socket.running:
                        await socket.connected.wait()
        except TimeoutError:
            return False
        return True

    def health(self) -> StreamHealth:
        live = [s for s in self._sockets if s.running]
        last = [s.last_message_ms for s in live if s.last_message_ms is not None]
        since = [s.connected_since_ms for s in live if s.connected_since_ms is not None]
        return StreamHealth(
            connected=bool(live) and all(s.connected.is_set() for s in live),
            last_message_ms=max(last) if last else None,
            reconnects=sum(s.reconnects for s in self._sockets),
            connected_since_ms=min(since) if since else None,
            streams=len(self.streams),
            dropped_events=self._out.dropped,
        )

    async def aclose(self) -> None:
        for socket in self._sockets:
            await socket.stop()
        self._out.close()

    async def __aenter__(self) -> BinanceMarketStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------------------------------------- user data


class ListenKeyApi(Protocol):
    """The part of the REST client the user stream needs (BinanceFutures provides it)."""

    @property
    def listen_key(self) -> str | None: ...

    async def create_listen_key(self) -> str: ...

    async def keepalive_listen_key(self) -> None: ...

    async def close_listen_key(self) -> None: ...


class _UserSocket(_Socket):
    def __init__(
        self, *, base_url: str, api: ListenKeyApi, out: _EventQueue[UserEvent], keepalive_s: float, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._base_url = base_url
        self._api = api
        self._out = out
        self._keepalive_s = keepalive_s
        self._key: str | None = None
        self._keepalive_task: asyncio.Task[None] | None = None

    async def url(self) -> str:
        # POST returns the account's active key (extending it) or a new one if it expired.
        self._key = await self._api.create_listen_key()
        return f"{self._base_url}/private/ws/{self._key}"

    async def on_connected(self) -> None:
        self._keepalive_task = asyncio.create_task(self._keep_alive(), name=f"ws-{self.name}-keepalive")

    def on_disconnected(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            self._keepalive_task = None

    async def _keep_alive(self) -> None:
        while True:
            await self._clock.sleep(self._keepalive_s)
            try:
                await self._api.keepalive_listen_key()
            except ExchangeError as exc:
                log.warning("listenKey keepalive failed; retrying", error=str(exc))
                continue
            if self._api.listen_key != self._key:
                self.replace_connection("listenKey replaced")
                return

    def on_message(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("e") == "MARGIN_CALL":
            log.warning("margin call", positions=str(message.get("p"))[:500])
            return
        event = parse.user_event(message)
        if event is None:
            return
        self._out.put(event)
        if isinstance(event, ListenKeyExpired):
            self.replace_connection("listenKeyExpired")


class BinanceUserStream:
    """The account's user-data stream on /private/ws/<listenKey>: the listenKey is created, kept alive
    and replaced inside; the stream reconnects forever and emits a StreamGap after each reconnect.

    The listenKey belongs to the API key, so every process using that key shares it: `aclose` leaves it
    open unless `close_listen_key_on_exit` is set.
    """

    def __init__(
        self,
        api: ListenKeyApi,
        ws_url: str,
        *,
        clock: Clock | None = None,
        keepalive_s: float = 1800.0,
        stale_after_s: float | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        ping_interval_s: float | None = USER_PING_INTERVAL_S,
        close_listen_key_on_exit: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self._api = api
        self._out: _EventQueue[UserEvent] = _EventQueue()
        self._close_key = close_listen_key_on_exit
        self._socket = _UserSocket(
            base_url=ws_url.rstrip("/"),
            api=api,
            out=self._out,
            keepalive_s=keepalive_s,
            name="user",
            clock=clock or WallClock(),
            stale_after_s=stale_after_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            ping_interval_s=ping_interval_s,
            rng=rng or random.Random(),
            on_gap=self._out.put,
        )

    @classmethod
    def from_settings(cls, settings: Settings, api: ListenKeyApi, *, clock: Clock | None = None) -> BinanceUserStream:
        """An idle account sends nothing for hours, so silence proves nothing: WebSocket pings prove the connection
        alive (a pong missing for 10 s drops it), and the monitor checks over REST that no fill was missed."""
        return cls(api, settings.ws_url, clock=clock, keepalive_s=settings.monitor.listen_key_keepalive_s)

    def start(self) -> None:
        """Connect in the background (events() starts it too)."""
        self._socket.start()

    def events(self) -> AsyncIterator[UserEvent]:
        self.start()
        return self._out.__aiter__()

    async def wait_connected(self, timeout_s: float) -> bool:
        self.start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._socket.connected.wait()
        except TimeoutError:
            return False
        return True

    def reconnect(self, reason: str) -> None:
        """Replace the connection now (it delivers nothing though it answers pings); a StreamGap follows."""
        self._socket.replace_connection(reason)

    def health(self) -> StreamHealth:
        socket = self._socket
        return StreamHealth(
            connected=socket.connected.is_set(),
            last_message_ms=socket.last_message_ms,
            reconnects=socket.reconnects,
            connected_since_ms=socket.connected_since_ms,
            streams=1,
        )

    async def aclose(self) -> None:
        await self._socket.stop()
        self._socket.on_disconnected()
        if self._close_key:
            with contextlib.suppress(ExchangeError):
                await self._api.close_listen_key()
        self._out.close()

    async def __aenter__(self) -> BinanceUserStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
