"""Exchange client speed against the simulated exchange on loopback.

REST: the client's overhead per call (budget, signing, time sync check, parsing) is its median round trip
minus the median of the same request sent with a bare httpx client, for a public and a signed endpoint;
plus the median round trip of a market order. WebSocket: market events per second through
BinanceMarketStream (frames received, parsed, queued, consumed) while the sim publishes every symbol's
mark price and book ticker, and for reference the parse-only rate of mark-price frames for the same symbols.

Prints one JSON object. Run from the repository root: `.venv/bin/python benchmarks/exchange.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr

from ats.domain import Side
from ats.exchange import parse
from ats.exchange.base import OrderRequest, OrderType
from ats.exchange.binance import BinanceFutures
from ats.exchange.streams import BinanceMarketStream
from sim.server import SimConfig, SimServer, SimServerThread

REST_CALLS = 300
WS_SECONDS = 240  # simulated seconds of market data to push


async def _timed_ms(call: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 3),
    }


async def rest(sim_rest_url: str, api_key: str, api_secret: str) -> dict[str, Any]:
    async with (
        BinanceFutures(sim_rest_url, SecretStr(api_key), SecretStr(api_secret)) as client,
        httpx.AsyncClient(base_url=sim_rest_url) as raw,
    ):
        await client.sync_time()

        async def raw_signed() -> None:
            query = f"symbol=BTCUSDT&recvWindow=5000&timestamp={client.server_now_ms()}"
            signature = hmac.new(api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
            response = await raw.get(
                f"/fapi/v1/openOrders?{query}&signature={signature}", headers={"X-MBX-APIKEY": api_key}
            )
            response.raise_for_status()

        async def raw_public() -> None:
            (await raw.get("/fapi/v1/time")).raise_for_status()

        for warm in (raw_public, client.server_time):
            await _timed_ms(warm, 20)
        public_raw = await _timed_ms(raw_public, REST_CALLS)
        public_client = await _timed_ms(client.server_time, REST_CALLS)
        signed_raw = await _timed_ms(raw_signed, REST_CALLS)
        signed_client = await _timed_ms(lambda: client.open_orders("BTCUSDT"), REST_CALLS)
        sides = iter([Side.BUY, Side.SELL] * REST_CALLS)
        ids = iter(range(10**6))

        async def order() -> None:
            await client.new_order(
                OrderRequest("BTCUSDT", next(sides), OrderType.MARKET, Decimal("0.002"), f"bench_{next(ids)}")
            )

        orders = await _timed_ms(order, 100)
    return {
        "public_time": {"raw": _summary(public_raw), "client": _summary(public_client)},
        "public_overhead_ms": round(statistics.median(public_client) - statistics.median(public_raw), 3),
        "signed_open_orders": {"raw": _summary(signed_raw), "client": _summary(signed_client)},
        "signed_overhead_ms": round(statistics.median(signed_client) - statistics.median(signed_raw), 3),
        "market_order_round_trip": _summary(orders),
        "calls_each": REST_CALLS,
    }


async def websocket(sim: SimServerThread, symbols: list[str]) -> dict[str, Any]:
    streams = [f"{s.lower()}@markPrice@1s" for s in symbols] + [f"{s.lower()}@bookTicker" for s in symbols]
    expected = WS_SECONDS * len(streams)
    frames: list[str] = []
    async with BinanceMarketStream(sim.ws_url, stale_after_s=60) as stream:
        await stream.subscribe(streams)
        if not await stream.wait_connected(10):
            raise RuntimeError("the market stream did not connect")
        await asyncio.sleep(0.5)  # let the subscriptions settle
        events = stream.events()
        received = 0
        started = time.perf_counter()

        pusher = asyncio.create_task(asyncio.to_thread(sim.call, lambda server: server.advance(WS_SECONDS)))
        async with asyncio.timeout(120):
            async for event in events:
                received += 1
                if received == 1:
                    started = time.perf_counter()
                if len(frames) < 2000 and hasattr(event, "symbol"):
                    frames.append(json.dumps({"e": "markPriceUpdate", "E": 1, "s": event.symbol, "p": "1.5",
                                              "i": "1.4", "r": "0.0001", "T": 2}))  # fmt: skip
                if received >= expected * 0.98:
                    break
        elapsed = time.perf_counter() - started
        await pusher
        dropped = stream.health().dropped_events
    parse_started = time.perf_counter()
    for _ in range(10):
        for frame in frames:
            parse.market_events(json.loads(frame))
    parse_rate = 10 * len(frames) / (time.perf_counter() - parse_started)
    return {
        "streams": len(streams),
        "events": received,
        "events_per_s": round(received / elapsed),
        "dropped": dropped,
        "parse_only_events_per_s": round(parse_rate),
    }


async def main() -> None:
    async with SimServer(SimConfig(seed=7, mode="manual", port=0)) as sim:
        await sim.set_balance(Decimal(10**7))
        rest_figures = await rest(sim.rest_url, sim.api_key, sim.api_secret)
        symbols = list(sim.market.symbols)
    with SimServerThread(SimConfig(seed=7, mode="manual", port=0)) as threaded:
        ws_figures = await websocket(threaded, symbols)
    print(json.dumps({"benchmark": "exchange", "rest": rest_figures, "websocket": ws_figures}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
