"""Market and user streams against a real WebSocket server on loopback (scripted, not the sim).

The server records every connection's path and control message and lets the test push frames, drop the
connection, or go silent. Timing uses short real intervals: these are real sockets.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ats.exchange.base import BookTicker, ListenKeyExpired, MarkPriceUpdate, OrderUpdate, StreamGap
from ats.exchange.errors import ListenKeyNotFound
from ats.exchange.streams import (
    BinanceMarketStream,
    BinanceUserStream,
    backoff_delay,
    normalize_stream,
    stream_path,
)

FAST: dict[str, Any] = {"stale_after_s": 5.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "ping_interval_s": None}


def mark(symbol: str, price: str, t: int = 1) -> dict[str, Any]:
    return {"e": "markPriceUpdate", "E": t, "s": symbol, "p": price, "i": price, "r": "0.0001", "T": t}


class Scripted:
    """A loopback WebSocket server: one entry per accepted connection, frames pushed by the test."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.paths: list[str] = []
        self.control: list[dict[str, Any]] = []
        self.new_connection = asyncio.Event()
        self.new_control = asyncio.Event()
        self.refuse = 0  # refuse this many handshakes with HTTP 503
        self.silent = False  # accept but never answer control messages
        self._server: Server | None = None

    async def __aenter__(self) -> Scripted:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._gate, ping_interval=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"ws://{host}:{port}"

    def _gate(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse > 0:
            self.refuse -= 1
            return Response(503, "Service Unavailable", Headers(), b"busy")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.paths.append(ws.request.path if ws.request else "")
        self.connections.append(ws)
        self.new_connection.set()
        async for raw in ws:
            message = json.loads(raw)
            self.control.append(message)
            self.new_control.set()
            if not self.silent:
                await ws.send(json.dumps({"result": None, "id": message.get("id")}))

    async def wait_connections(self, count: int) -> ServerConnection:
        async with asyncio.timeout(5):
            while len(self.connections) < count:
                self.new_connection.clear()
                await self.new_connection.wait()
        return self.connections[count - 1]

    async def wait_control(self, streams: int) -> None:
        """Until control messages have named `streams` streams in all."""
        async with asyncio.timeout(5):
            while sum(len(m["params"]) for m in self.control) < streams:
                self.new_control.clear()
                await self.new_control.wait()

    async def push(self, payload: Any, connection: int = -1) -> None:
        await self.connections[connection].send(payload if isinstance(payload, str) else json.dumps(payload))


async def next_event(events: AsyncIterator[Any]) -> Any:
    async with asyncio.timeout(5):
        return await anext(events)


# ---------------------------------------------------------------------------------------------- pure helpers


def test_stream_names_and_routing() -> None:
    assert normalize_stream("BTCUSDT@markPrice@1s") == "btcusdt@markPrice@1s"
    assert normalize_stream("!markPrice@arr@1s") == "!markPrice@arr@1s"
    assert stream_path("btcusdt@bookTicker") == "public"
    assert stream_path("btcusdt@depth20@100ms") == "public"
    assert stream_path("!bookTicker") == "public"
    for name in ("btcusdt@markPrice@1s", "btcusdt@kline_1h", "btcusdt@aggTrade", "btcusdt@forceOrder", "!ticker@arr"):
        assert stream_path(name) == "market"


def test_backoff_grows_is_capped_jittered_and_never_zero() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, initial_s=0.5, max_s=30, rng=rng) for n in range(12)]
    assert all(0.25 <= d <= 30 for d in delays)
    assert delays[0] <= 0.5
    assert all(15 <= d <= 30 for d in delays[8:])  # capped, still jittered
    assert len({round(d, 6) for d in delays[8:]}) > 1
    assert backoff_delay(10_000, initial_s=0.5, max_s=30, rng=rng) <= 30


# ---------------------------------------------------------------------------------------------- market stream


async def test_streams_are_routed_to_public_and_market_paths_and_parsed() -> None:
    async with Scripted() as server:
        stream = BinanceMarketStream(server.url, **FAST)
        await stream.subscribe(["BTCUSDT@markPrice@1s", "btcusdt@bookTicker", "ethusdt@kline_1h"])
        assert await stream.wait_connected(5)
        assert sorted(server.paths) == [
            "/market/stream?streams=btcusdt@markPrice@1s/ethusdt@kline_1h",
            "/public/stream?streams=btcusdt@bookTicker",
        ]
        market = server.paths.index("/market/stream?streams=btcusdt@markPrice@1s/ethusdt@kline_1h")
        public = 1 - market
        events = stream.events()
        await server.push({"stream": "btcusdt@markPrice@1s", "data": {**mark("BTCUSDT", "91000.5"), "new": 1}}, market)
        await server.push("this is not json", market)
        await server.push({"stream": "x", "data": {"e": "markPriceUpdate", "s": "BTCUSDT"}}, market)  # malformed
        await server.push({"stream": "x", "data": {"e": "someNewEvent", "E": 1}}, market)  # unknown: ignored
        await server.push({"result": None, "id": 99}, market)  # an ack
        book = {"e": "bookTicker", "u": 1, "E": 2, "T": 2, "s": "BTCUSDT", "b": "1", "B": "2", "a": "3", "A": "4"}
        await server.push({"stream": "btcusdt@bookTicker", "data": book}, public)
        first = await next_event(events)
        second = await next_event(events)
        assert isinstance(first, MarkPriceUpdate)
        assert str(first.mark_price) == "91000.5"
        assert isinstance(second, BookTicker)
        health = stream.health()
        assert health.connected
        assert health.streams == 3
        assert health.reconnects == 0
        assert health.last_message_ms is not None
        await stream.aclose()
        assert [e async for e in events] == []  # the iterator ends on close


async def test_live_subscribe_and_unsubscribe_are_sent_as_control_messages() -> None:
    async with Scripted() as server, BinanceMarketStream(server.url, **FAST) as stream:
        await stream.subscribe(["btcusdt@markPrice@1s"])
        assert await stream.wait_connected(5)
        await stream.subscribe(["ethusdt@markPrice@1s", "btcusdt@markPrice@1s"])
        await stream.unsubscribe(["btcusdt@markPrice@1s"])
        await server.wait_control(2)
        assert [(m["method"], m["params"]) for m in server.control] == [
            ("SUBSCRIBE", ["ethusdt@markPrice@1s"]),
            ("UNSUBSCRIBE", ["btcusdt@markPrice@1s"]),
        ]
        assert stream.streams == {"ethusdt@markPrice@1s"}
        assert len(server.paths) == 1


async def test_reconnect_emits_a_gap_and_resubscribes_everything() -> None:
    async with Scripted() as server, BinanceMarketStream(server.url, **FAST) as stream:
        events = stream.events()
        await stream.subscribe(["btcusdt@markPrice@1s"])
        first = await server.wait_connections(1)
        await stream.subscribe(["ethusdt@markPrice@1s"])  # live, by message
        await server.push({"stream": "btcusdt@markPrice@1s", "data": mark("BTCUSDT", "1")})
        assert isinstance(await next_event(events), MarkPriceUpdate)
        await first.close(code=1011, reason="server restart")
        await server.wait_connections(2)
        gap = await next_event(events)
        assert isinstance(gap, StreamGap)
        assert gap.stream == "market"
        assert "1011" in gap.reason
        assert gap.down_since_ms <= gap.reconnected_at_ms
        assert server.paths[1] == "/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s"
        await server.push({"stream": "ethusdt@markPrice@1s", "data": mark("ETHUSDT", "2")})
        after = await next_event(events)
        assert isinstance(after, MarkPriceUpdate)
        assert after.symbol == "ETHUSDT"
        assert stream.health().reconnects == 1


async def test_a_silent_connection_is_replaced_by_the_watchdog() -> None:
    async with Scripted() as server:
        options = {**FAST, "stale_after_s": 0.2}
        async with BinanceMarketStream(server.url, **options) as stream:
            events = stream.events()
            await stream.subscribe(["btcusdt@markPrice@1s"])
            await server.wait_connections(1)
            await server.push({"stream": "btcusdt@markPrice@1s", "data": mark("BTCUSDT", "1")})
            assert isinstance(await next_event(events), MarkPriceUpdate)
            gap = await next_event(events)  # nothing more arrives: stale after 0.2 s
            assert isinstance(gap, StreamGap)
            assert "no message" in gap.reason
            assert len(server.paths) == 2


async def test_refused_handshakes_are_retried_until_the_server_accepts() -> None:
    async with Scripted() as server:
        server.refuse = 4
        async with BinanceMarketStream(server.url, **FAST) as stream:
            await stream.subscribe(["btcusdt@markPrice@1s"])
            assert await stream.wait_connected(5)
            assert stream.health().reconnects == 0  # never connected before: not a reconnect, no gap


async def test_pings_are_answered() -> None:
    async with Scripted() as server, BinanceMarketStream(server.url, **FAST) as stream:
        await stream.subscribe(["btcusdt@markPrice@1s"])
        connection = await server.wait_connections(1)
        pong = await connection.ping(b"binance")
        async with asyncio.timeout(5):
            await pong


async def test_many_streams_are_sharded_and_subscribed_in_paced_batches() -> None:
    async with Scripted() as server:
        options = {**FAST, "max_streams_per_connection": 150, "control_messages_per_s": 50}
        async with BinanceMarketStream(server.url, **options) as stream:
            names = [f"s{i:03d}usdt@markPrice@1s" for i in range(200)]
            await stream.subscribe(names)
            assert await stream.wait_connected(5)
            await server.wait_control(50)
            urls = sorted(server.paths)
            assert len(urls) == 2
            in_urls = sum(len(p.split("=", 1)[1].split("/")) for p in urls)
            by_message = sum(len(m["params"]) for m in server.control)
            assert in_urls + by_message == 200
            assert all(len(m["params"]) <= 100 for m in server.control)


# ---------------------------------------------------------------------------------------------- user stream


class FakeListenKeys:
    """The REST side of the listenKey: hands out key-1, key-2, ...; keepalive can be told to fail."""

    def __init__(self) -> None:
        self.created = 0
        self.keepalives = 0
        self.closed = 0
        self.expire_on_keepalive = False
        self._key: str | None = None

    @property
    def listen_key(self) -> str | None:
        return self._key

    async def create_listen_key(self) -> str:
        if self._key is None:
            self.created += 1
            self._key = f"key-{self.created}"
        return self._key

    async def keepalive_listen_key(self) -> None:
        self.keepalives += 1
        if self.expire_on_keepalive:
            self.expire_on_keepalive = False
            self._key = None  # what BinanceFutures does on -1125: a new key
            await self.create_listen_key()

    async def close_listen_key(self) -> None:
        self.closed += 1
        self._key = None

    def expire(self) -> None:
        self._key = None


ORDER_FILL = {
    "e": "ORDER_TRADE_UPDATE", "E": 10, "T": 9,
    "o": {"s": "BTCUSDT", "c": "ats_k_E", "S": "BUY", "o": "MARKET", "q": "0.01", "p": "0", "ap": "91000",
          "sp": "0", "x": "TRADE", "X": "FILLED", "i": 5, "l": "0.01", "z": "0.01", "L": "91000", "n": "0.45",
          "N": "USDT", "T": 9, "t": 77, "m": False, "R": False, "cp": False, "rp": "0"},
}  # fmt: skip


async def test_user_stream_connects_on_the_private_path_and_parses_fills() -> None:
    async with Scripted() as server:
        keys = FakeListenKeys()
        async with BinanceUserStream(keys, server.url, keepalive_s=60, **FAST) as stream:
            events = stream.events()
            await server.wait_connections(1)
            assert server.paths == ["/private/ws/key-1"]
            await server.push({"e": "MARGIN_CALL", "E": 1, "cw": "3.16", "p": []})  # logged, not an event
            await server.push({"e": "TRADE_LITE", "E": 1})
            await server.push(ORDER_FILL)
            fill = await next_event(events)
            assert isinstance(fill, OrderUpdate)
            assert fill.trade_id == 77
            assert stream.health().connected
        assert keys.closed == 0  # the key belongs to the API key: left open for other processes


async def test_listen_key_expiry_is_delivered_then_the_stream_moves_to_a_new_key() -> None:
    async with Scripted() as server:
        keys = FakeListenKeys()
        async with BinanceUserStream(keys, server.url, keepalive_s=60, **FAST) as stream:
            events = stream.events()
            await server.wait_connections(1)
            keys.expire()
            await server.push({"e": "listenKeyExpired", "E": "1736996475556", "listenKey": "key-1"})
            assert isinstance(await next_event(events), ListenKeyExpired)
            gap = await next_event(events)
            assert isinstance(gap, StreamGap)
            assert gap.stream == "user"
            assert gap.reason == "listenKeyExpired"
            assert server.paths == ["/private/ws/key-1", "/private/ws/key-2"]
            await server.push(ORDER_FILL)
            assert isinstance(await next_event(events), OrderUpdate)


async def test_keepalive_that_replaces_the_key_moves_the_stream() -> None:
    async with Scripted() as server:
        keys = FakeListenKeys()
        keys.expire_on_keepalive = True
        async with BinanceUserStream(keys, server.url, keepalive_s=0.05, **FAST) as stream:
            events = stream.events()
            gap = await next_event(events)
            assert isinstance(gap, StreamGap)
            assert gap.reason == "listenKey replaced"
            assert server.paths == ["/private/ws/key-1", "/private/ws/key-2"]
            assert keys.keepalives >= 1


async def test_a_quiet_user_stream_stays_up_while_pongs_come_and_is_replaced_when_they_stop() -> None:
    """Silence proves nothing on an idle account; a ping without a pong proves the socket dead."""
    async with Scripted() as server:
        keys = FakeListenKeys()
        options = {**FAST, "ping_interval_s": 0.1}
        del options["stale_after_s"]  # the default: no silence limit
        async with BinanceUserStream(keys, server.url, keepalive_s=60, **options) as stream:
            events = stream.events()
            connection = await server.wait_connections(1)
            await asyncio.sleep(0.6)  # six ping/pong round trips, not one frame
            assert len(server.paths) == 1
            connection.transport.pause_reading()  # a black hole: the client's pings go unanswered
            gap = await next_event(events)
            assert isinstance(gap, StreamGap)
            assert len(server.paths) == 2


async def test_a_user_stream_can_be_told_to_reconnect() -> None:
    async with Scripted() as server:
        keys = FakeListenKeys()
        async with BinanceUserStream(keys, server.url, keepalive_s=60, **FAST) as stream:
            events = stream.events()
            assert await stream.wait_connected(5)
            stream.reconnect("2 fills missed")
            gap = await next_event(events)
            assert isinstance(gap, StreamGap)
            assert gap.reason == "2 fills missed"
            assert len(server.paths) == 2


async def test_listen_key_failures_before_connecting_are_retried() -> None:
    class Flaky(FakeListenKeys):
        failures = 2

        async def create_listen_key(self) -> str:
            if self.failures:
                self.failures -= 1
                raise ListenKeyNotFound("This listenKey does not exist.", code=-1125)
            return await super().create_listen_key()

    async with Scripted() as server, BinanceUserStream(Flaky(), server.url, **FAST) as stream:
        assert await stream.wait_connected(5)
        assert server.paths == ["/private/ws/key-1"]


async def test_close_listen_key_on_exit_when_asked() -> None:
    async with Scripted() as server:
        keys = FakeListenKeys()
        stream = BinanceUserStream(keys, server.url, close_listen_key_on_exit=True, **FAST)
        assert await stream.wait_connected(5)
        await stream.aclose()
        assert keys.closed == 1
        assert not stream.health().connected


@pytest.mark.parametrize("count", [3])
async def test_repeated_drops_never_end_the_stream(count: int) -> None:
    async with Scripted() as server, BinanceMarketStream(server.url, **FAST) as stream:
        events = stream.events()
        await stream.subscribe(["btcusdt@markPrice@1s"])
        for n in range(1, count + 1):
            connection = await server.wait_connections(n)
            await connection.close()
            assert isinstance(await next_event(events), StreamGap)
        await server.wait_connections(count + 1)
        await server.push({"stream": "btcusdt@markPrice@1s", "data": mark("BTCUSDT", "3")})
        assert isinstance(await next_event(events), MarkPriceUpdate)
        assert stream.health().reconnects == count
