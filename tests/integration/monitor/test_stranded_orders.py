"""The monitor cancels a closed position's leftover exits itself, whether or not the exchange expires them.

Binance's behaviour for reduce-only and closePosition orders that outlive their position is unconfirmed, so the
sim has a switch (`SimConfig.expire_stranded`); the system must end with nothing left open under both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ats.domain import Side, client_id
from ats.exchange.base import OrderRequest, OrderType
from ats.exchange.binance import BinanceFutures
from ats.lifecycle import Phase, Position
from ats.notify import ExitReason
from db.session import Database
from sim.server import SimConfig, SimServer
from tests.integration.monitor.harness import Desk, RunningMonitor, fills_in_db, fills_on_exchange, wait_for

SYMBOL = "BTCUSDT"


@pytest.fixture(params=[False, True], ids=["siblings-left-open", "siblings-expired-by-the-exchange"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[SimServer]:
    async with SimServer(SimConfig(seed=7, mode="manual", port=0, expire_stranded=request.param)) as server:
        yield server


def _closed(p: Position) -> bool:
    return p.phase is Phase.CLOSED


async def _nothing_left(sim: SimServer, exchange: BinanceFutures, db: Database, key: str, legs: set[str]) -> None:
    engine = sim.engine
    await wait_for(lambda: not engine.open_algos and not engine.open_orders, what="the leftover exits gone")
    assert await exchange.positions() == []
    assert fills_in_db(db) == fills_on_exchange(engine.trades)
    ended = {a.client_algo_id: a.status for a in engine.algo_orders.values()}
    expected = "EXPIRED" if engine.options.expire_stranded else "CANCELED"
    assert {ended[client_id(key, leg)] for leg in legs} == {expected}  # the switch is what removed them


async def test_after_the_stop_loss_the_targets_are_not_left_open(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, lambda p: p.phase is Phase.OPEN, "protected")
    assert p.stop_price is not None
    await sim.set_price(SYMBOL, p.stop_price - p.policy.rules.tick_size)
    p = await desk.wait(key, _closed, "stopped out")
    assert p.exit_reason is ExitReason.STOP
    await _nothing_left(sim, exchange, db, key, {"T1", "T2"})


async def test_after_a_manual_close_the_stop_and_targets_are_not_left_open(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, lambda p: p.phase is Phase.OPEN, "protected")
    await exchange.new_order(
        OrderRequest(SYMBOL, Side.SELL, OrderType.MARKET, p.open_qty, "web_close_2", reduce_only=True)
    )
    p = await desk.wait(key, _closed, "closed outside the system")
    assert p.exit_reason is ExitReason.EXTERNAL
    await _nothing_left(sim, exchange, db, key, {"S1", "T1", "T2"})
