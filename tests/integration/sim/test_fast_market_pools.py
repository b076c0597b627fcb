"""The README's fast market (`ats sim serve --interval 1m`) gives the pools the hourly market gives.

Both markets of one seed hold the same bars (every 1m bar moves like an hourly bar); the 1m market's clock is
compressed to match (onboard dates, 24h tickers, funding), and the pool rules scale their windows to its bars
(UniverseConfig.for_interval). Fetched over HTTP and parsed by the system's own parsers.
"""

from __future__ import annotations

import asyncio

import httpx

from ats.clock import FakeClock
from ats.domain import Bars, SymbolRules
from ats.exchange import parse
from ats.universe import (
    PoolResult,
    UniverseConfig,
    build_elite,
    build_overlay,
    elite_candidates,
    overlay_candidates,
)
from sim.server import SimConfig, SimServer

START_MS = 1_767_225_600_000  # a whole hour: neither market has a forming bar under way
BARS = 480  # what the flows keep per symbol (tasks.market.HISTORY_BARS)


async def pools(interval: str) -> tuple[PoolResult, PoolResult, dict[str, int]]:
    clock = FakeClock(START_MS)
    async with (
        SimServer(SimConfig(seed=7, bar_interval=interval, mode="manual", port=0), clock=clock) as sim,
        httpx.AsyncClient(base_url=sim.rest_url) as http,
    ):
        info = (await http.get("/fapi/v1/exchangeInfo")).json()
        rules = {r.symbol: r for r in map(SymbolRules.from_exchange_info, info["symbols"])}
        tickers = [parse.ticker_24h(t) for t in (await http.get("/fapi/v1/ticker/24hr")).json()]
        config = UniverseConfig().for_interval(interval)
        now = clock.now_ms()
        wanted = list(dict.fromkeys(
            elite_candidates(rules, tickers, now_ms=now, config=config)
            + overlay_candidates(rules, tickers, now_ms=now, config=config)
        ))  # fmt: skip
        answers = await asyncio.gather(*(
            http.get("/fapi/v1/klines", params={"symbol": s, "interval": interval, "limit": BARS}) for s in wanted
        ))  # fmt: skip
        rows = {s: parse.kline_rows(a.json()) for s, a in zip(wanted, answers, strict=True)}
        bars = {s: Bars.from_rows(s, interval, r) for s, r in rows.items()}
        bar_ms = 60_000 if interval == "1m" else 3_600_000
        ages = {s: (now - r.onboard_date_ms) // bar_ms for s, r in rules.items()}  # in bars
        return (
            build_elite(rules, tickers, bars, now_ms=now, config=config),
            build_overlay(rules, tickers, bars, now_ms=now, config=config),
            ages,
        )


async def test_a_1m_market_builds_the_pools_of_the_1h_market() -> None:
    elite_1h, overlay_1h, ages_1h = await pools("1h")
    elite_1m, overlay_1m, ages_1m = await pools("1m")
    assert ages_1m == ages_1h  # listing ages in bars: new listings stay new, the others are a market year old
    assert len(elite_1h.symbols) >= 10
    assert overlay_1h.symbols
    assert (elite_1m.symbols, overlay_1m.symbols) == (elite_1h.symbols, overlay_1h.symbols)
    assert elite_1m.excluded.keys() == elite_1h.excluded.keys()
    assert overlay_1m.excluded.keys() == overlay_1h.excluded.keys()
    assert elite_1m.scores == elite_1h.scores
    assert overlay_1m.scores == overlay_1h.scores
