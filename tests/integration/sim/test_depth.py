"""Diff depth over a real WebSocket: a book kept by Binance's documented procedure stays equal to the sim's."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import websockets

from sim.server import SimServer

Book = dict[str, dict[Decimal, Decimal]]


async def _events_until(ws: Any, symbol: str, update_id: int, buffer: list[dict[str, Any]]) -> None:
    """Read depth events into `buffer` until `symbol`'s event with u == update_id has arrived."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        event = message["data"]
        buffer.append(event)
        if event["s"] == symbol and event["u"] >= update_id:
            return


def _apply(book: Book, event: dict[str, Any]) -> None:
    for side, key in (("bids", "b"), ("asks", "a")):
        for price, qty in event[key]:
            if Decimal(qty) == 0:
                book[side].pop(Decimal(price), None)
            else:
                book[side][Decimal(price)] = Decimal(qty)


def _from_snapshot(snapshot: dict[str, Any]) -> Book:
    return {side: {Decimal(p): Decimal(q) for p, q in snapshot[side]} for side in ("bids", "asks")}


async def _snapshot(http: httpx.AsyncClient, symbol: str) -> dict[str, Any]:
    response = await http.get("/fapi/v1/depth", params={"symbol": symbol, "limit": 1000})
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


async def test_a_book_kept_from_snapshot_and_diffs_equals_the_sims_through_a_3_percent_move(sim: SimServer) -> None:
    url = f"{sim.ws_url}/public/stream?streams=btcusdt@depth@100ms/ethusdt@depth"
    async with websockets.connect(url) as ws, httpx.AsyncClient(base_url=sim.rest_url) as http:
        buffer: list[dict[str, Any]] = []
        await sim.advance(1)
        await _events_until(ws, "BTCUSDT", int(sim.market.book_id[sim.market.index["BTCUSDT"]]), buffer)
        snapshot = await _snapshot(http, "BTCUSDT")
        last_id = snapshot["lastUpdateId"]
        book = _from_snapshot(snapshot)
        btc = [e for e in buffer if e["s"] == "BTCUSDT" and e["u"] >= last_id]  # step 5: drop u < lastUpdateId
        assert btc
        assert btc[0]["U"] <= last_id <= btc[0]["u"]
        previous_u = None
        applied = 0

        def process(events: list[dict[str, Any]]) -> None:
            nonlocal previous_u, applied
            for event in events:
                if event["s"] != "BTCUSDT":
                    continue
                if previous_u is not None:
                    assert event["pu"] == previous_u, "a gap in BTCUSDT's update ids"
                assert event["U"] <= event["u"]
                previous_u = event["u"]
                _apply(book, event)
                applied += 1
                assert max(book["bids"]) < min(book["asks"]), "the kept book is crossed"

        process(btc)
        start = Decimal(str(sim.market.quote("BTCUSDT").last))
        for step in range(1, 31):  # up 3 % in 30 steps, with ETH moving in between (its ids are its own)
            await sim.set_price("BTCUSDT", start * (1 + Decimal("0.001") * step))
            await sim.set_price("ETHUSDT", Decimal(3000) + step)
            await sim.advance(1)
            buffer = []
            await _events_until(ws, "BTCUSDT", int(sim.market.book_id[sim.market.index["BTCUSDT"]]), buffer)
            process(buffer)
        final = await _snapshot(http, "BTCUSDT")
        assert final["lastUpdateId"] == previous_u
        assert book == _from_snapshot(final)
        assert applied >= 60
        assert min(book["asks"]) >= start * Decimal("1.029")


async def test_vanished_levels_are_sent_with_quantity_zero_and_ids_are_per_symbol(sim: SimServer) -> None:
    async with websockets.connect(f"{sim.ws_url}/public/ws/btcusdt@depth") as ws:
        await sim.advance(1)
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await sim.set_price("ETHUSDT", Decimal(3100))  # another symbol: nothing for BTCUSDT, no id used
        price = Decimal(first["a"][0][0]) * Decimal("1.01") if first["a"] else Decimal(95000)
        await sim.set_price("BTCUSDT", price)
        moved = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert moved["pu"] == first["u"]
        assert moved["U"] == first["u"] + 1
        removed = [level for level in moved["b"] if Decimal(level[1]) == 0]
        assert removed, "bids below the old price vanished: they must be sent with quantity 0"
        assert moved["s"] == "BTCUSDT"


async def test_partial_depth_and_book_ticker_carry_the_symbols_own_update_id(sim: SimServer) -> None:
    async with websockets.connect(f"{sim.ws_url}/public/stream?streams=btcusdt@depth5@100ms/btcusdt@bookTicker") as ws:
        await sim.advance(1)
        events = {m["stream"]: m["data"] for m in [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]}
        depth, top = events["btcusdt@depth5@100ms"], events["btcusdt@bookTicker"]
        assert len(depth["b"]) == len(depth["a"]) == 5
        assert depth["u"] == top["u"] == int(sim.market.book_id[sim.market.index["BTCUSDT"]])
        assert [top["b"], top["B"]] == depth["b"][0]
        assert [top["a"], top["A"]] == depth["a"][0]
