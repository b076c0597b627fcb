"""Market streams over a real WebSocket: every accepted stream delivers, the others are refused out loud."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
import websockets

from sim.market import TickInfo
from sim.server import SimConfig, SimServer
from sim.streams import StreamBook


async def _collect(ws: Any, wanted: set[str], wait_s: float = 5.0) -> dict[str, Any]:
    """The first payload of each wanted stream (combined-stream messages)."""
    seen: dict[str, Any] = {}
    while not wanted <= set(seen):
        message = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
        seen.setdefault(message["stream"], message["data"])
    return seen


async def test_tickers_klines_at_coarser_intervals_and_continuous_klines_deliver(sim: SimServer) -> None:
    streams = {
        "btcusdt@ticker", "btcusdt@miniTicker", "!ticker@arr", "!miniTicker@arr", "btcusdt@kline_4h",
        "btcusdt@kline_1d", "btcusdt@kline_1M", "btcusdt_perpetual@continuousKline_1h",
    }  # fmt: skip
    async with websockets.connect(f"{sim.ws_url}/market/stream?streams={'/'.join(sorted(streams))}") as ws:
        await sim.advance(2)
        seen = await _collect(ws, streams)
    ticker, mini = seen["btcusdt@ticker"], seen["btcusdt@miniTicker"]
    assert ticker["e"] == "24hrTicker"
    assert mini["e"] == "24hrMiniTicker"
    assert ticker["c"] == mini["c"]
    assert float(ticker["c"]) > 0
    assert {"p", "P", "w", "Q", "O", "C", "F", "L", "n"} <= set(ticker)
    assert "p" not in mini
    assert {t["s"] for t in seen["!ticker@arr"]} >= {"BTCUSDT", "ETHUSDT"}
    assert seen["btcusdt@kline_4h"]["k"]["i"] == "4h"
    assert seen["btcusdt@kline_4h"]["k"]["t"] % (4 * 3_600_000) == 0
    assert seen["btcusdt@kline_1M"]["k"]["T"] > seen["btcusdt@kline_1M"]["k"]["t"] + 27 * 86_400_000
    continuous = seen["btcusdt_perpetual@continuousKline_1h"]
    assert (continuous["e"], continuous["ps"], continuous["ct"]) == ("continuous_kline", "BTCUSDT", "PERPETUAL")
    assert continuous["k"]["c"] == seen["btcusdt@kline_4h"]["k"]["c"]


async def test_a_4h_kline_closes_only_when_its_fourth_hour_ends(sim: SimServer) -> None:
    async with websockets.connect(f"{sim.ws_url}/market/ws/btcusdt@kline_4h") as ws:
        to_boundary = (4 * 3_600_000 - sim.market.now_ms % (4 * 3_600_000)) / 1000
        await sim.advance(to_boundary + 1, tick_s=60)
        closed: list[dict[str, Any]] = []
        while not closed:
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if event["k"]["x"]:
                closed.append(event)
    rows = sim.market.kline_rows("BTCUSDT", "4h", start_ms=closed[0]["k"]["t"], end_ms=None, limit=1)
    assert [closed[0]["k"]["o"], closed[0]["k"]["h"], closed[0]["k"]["l"], closed[0]["k"]["c"]] == rows[0][1:5]


async def test_malformed_requests_get_binances_error_replies(sim: SimServer) -> None:
    async with websockets.connect(f"{sim.ws_url}/market/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIB", "params": [], "id": 1}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["error"]["code"] == 2
        assert reply["error"]["msg"].startswith("Invalid request: unknown variant `SUBSCRIB`, expected one of")
        await ws.send("{not json")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["error"]["code"] == 3


@pytest.mark.parametrize(
    "stream", ["btcusdt@kline_1m", "btcusdt@kline_7m", "btcusdt@nonsense", "nopeusdt@aggTrade", "!everything"]
)
async def test_streams_the_sim_cannot_serve_are_refused_with_an_error(sim: SimServer, stream: str) -> None:
    async with websockets.connect(f"{sim.ws_url}/market/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", stream], "id": 7}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["id"] == 7
        assert reply["error"]["code"] == 2
        assert reply["error"]["msg"].startswith("Invalid request: invalid stream (")  # Binance's words, then why
        assert stream in reply["error"]["msg"]
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"result": [], "id": 8}
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(f"{sim.ws_url}/market/ws/{stream}"):
            pass


def test_sub_second_book_updates_publish_each_depth_cadence_when_due(sim_thread: Any) -> None:
    book = StreamBook(sim_thread.server.market)
    tick = TickInfo(time_ms=0, seconds=1.0)
    assert book.due(tick, 1_000) == {100, 250, 500}
    fast = TickInfo(time_ms=0, seconds=0.0, book_only=True)
    assert book.due(fast, 1_100) == {100}
    assert book.due(fast, 1_200) == {100}
    assert book.due(fast, 1_300) == {100, 250}
    assert book.due(fast, 1_500) == {100, 250, 500}


async def test_realtime_books_update_every_100_ms_between_market_ticks() -> None:
    async with SimServer(SimConfig(mode="realtime", port=0)) as sim:
        url = f"{sim.ws_url}/public/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker"
        async with websockets.connect(url) as ws:
            times: dict[str, list[int]] = {"btcusdt@depth@100ms": [], "btcusdt@bookTicker": []}
            while min(len(t) for t in times.values()) < 12:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                times[message["stream"]].append(message["data"]["E"])
    for stream, stamps in times.items():
        gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
        assert gaps[len(gaps) // 2] < 500, f"{stream} is not sub-second: {gaps}"
