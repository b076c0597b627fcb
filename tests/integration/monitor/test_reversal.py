"""Factor-driven management: each closed bar of a watched symbol is re-scored (the scorer warmed from REST klines,
fed by the kline stream) and an opposite signal tightens the stop, as the position's policy says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from ats.config import LevelSettings, MonitorSettings
from ats.domain import Direction
from ats.exchange.binance import BinanceFutures
from ats.factors import FactorRow, IncrementalScorer
from ats.lifecycle import Phase
from db.session import Database
from monitor.view import Watch, reversal_signal
from sim.server import OffsetClock, SimConfig, SimServer
from tests.integration.monitor.harness import Desk, client, start_monitor, wait_for

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "LINKUSDT")
WARM_BARS = 100  # as the monitor's test tuning
# Any opposite direction counts; wide stops and targets so that one bar's move closes nothing.
POLICY = MonitorSettings(on_reversal="tighten", reversal_score=0)
WIDE = LevelSettings(stop_pct=Decimal(20), tp1_pct=Decimal(40), tp2_pct=Decimal(80))


@pytest.fixture
async def sim_1m() -> AsyncIterator[SimServer]:
    """In manual mode the market stands still but the server's clock runs with wall time: started mid-bar, the
    clock stays inside the market's forming bar for 30 s, so every client tells the same bars closed (starting at a
    random phase, a slow setup let the clock pass the bar's end and the warm-ups disagreed)."""
    clock = OffsetClock()
    clock.advance((30_000 - clock.now_ms() % 60_000) % 60_000 / 1000)
    async with SimServer(SimConfig(seed=7, mode="manual", port=0, bar_interval="1m"), clock=clock) as server:
        yield server


async def _warm(exchange: BinanceFutures, symbol: str) -> tuple[IncrementalScorer, FactorRow]:
    """The same warm-up the monitor does, from the same bars (the market stands still until `advance`)."""
    bars = await exchange.klines(symbol, "1m", limit=WARM_BARS)
    scorer = IncrementalScorer("1m")
    return scorer, scorer.warm([bars], as_of_ms=int(bars.close_time[-1]) + 1).rows[0]


async def _next_row(exchange: BinanceFutures, scorer: IncrementalScorer, symbol: str) -> FactorRow:
    await exchange.sync_time()  # the sim's clock jumped: closed bars are told apart by server time
    bars = await exchange.klines(symbol, "1m", limit=2)
    return scorer.update(bars.tail(1), as_of_ms=int(bars.close_time[-1]) + 1)


async def test_an_opposite_signal_on_a_closed_bar_tightens_the_stop(sim_1m: SimServer, db: Database) -> None:
    exchange = client(sim_1m.rest_url, sim_1m.api_key, sim_1m.api_secret)
    running = await start_monitor(sim_1m.rest_url, sim_1m.ws_url, sim_1m.api_key, sim_1m.api_secret, db, "1m")
    try:
        desk = Desk(exchange, db)
        scorers, keys = {}, {}
        for symbol in SYMBOLS:  # against the current verdict: it is likely to hold for one more bar
            scorers[symbol], now = await _warm(exchange, symbol)
            direction = Direction.SHORT if now.direction is Direction.LONG else Direction.LONG
            keys[symbol] = await desk.open(symbol, direction, levels=WIDE, monitor=POLICY)
        before = {s: await desk.wait(k, lambda p: p.phase is Phase.OPEN, "protected") for s, k in keys.items()}
        await wait_for(lambda: running.monitor.scoring >= set(SYMBOLS), what="scorers warmed")

        await sim_1m.advance(61)  # one bar closes
        expected = {}
        for symbol, key in keys.items():
            row = await _next_row(exchange, scorers[symbol], symbol)
            watch = Watch.of(before[symbol])
            assert watch is not None
            expected[key] = reversal_signal(watch, row, Decimal(1), 0)
        reversed_keys = [k for k, e in expected.items() if e is not None]
        assert reversed_keys, "no opposite signal on any symbol: choose other symbols or another seed"
        for key in reversed_keys:
            p = await desk.wait(key, lambda p: p.last_reversal_bar_ms is not None, "the reversal applied")
            assert p.last_reversal_bar_ms == expected[key].bar_open_time_ms  # type: ignore[union-attr]
            old, new = before[p.symbol].stop_price, p.stop_price
            assert old is not None
            assert new is not None
            assert p.direction.sign * (new - old) > 0  # tightened toward the price, never loosened
            await desk.wait(key, lambda p: p.phase is Phase.OPEN, "the tighter stop placed")
        for key in set(keys.values()) - set(reversed_keys):
            assert desk.position(key).last_reversal_bar_ms is None
    finally:
        await running.shutdown()
        await exchange.aclose()
