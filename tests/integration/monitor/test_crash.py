"""Crash safety: the monitor is SIGKILLed at random points while 20 positions go through their lifecycles on the
simulated exchange (which outlives it, in this process). After every restart each open position is protected by
exactly the orders its record says, no order was ever sent twice, and the database holds exactly the exchange's
fills."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ats.domain import Direction, is_own_client_id
from ats.exchange.binance import BinanceFutures
from ats.lifecycle import OrderState, Phase, Position, Role
from db.session import Database
from sim.server import SimConfig, SimServer, SimServerThread
from tests.integration.monitor.harness import Desk, client, fills_in_db, fills_on_exchange, wait_for
from tests.integration.monitor.processes import MonitorProcess, monitor_env, wait_role

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "LTCUSDT")
ROUNDS = 4  # x 5 symbols = 20 lifecycles
KILL_CHANCE = 0.3  # after each price move
SCENARIOS = ("tp2", "breakeven", "stop", "hold")
WEIGHT_LIMIT = 1_000_000


@pytest.fixture
def roomy_sim() -> Iterator[SimServerThread]:
    """The sim in its own thread; a weight limit that two processes hammering one IP cannot reach."""
    with SimServerThread(SimConfig(seed=11, mode="manual", port=0, weight_limit=WEIGHT_LIMIT)) as server:
        yield server


@pytest.fixture
async def exchange(roomy_sim: SimServerThread) -> AsyncIterator[BinanceFutures]:
    exchange = client(roomy_sim.rest_url, roomy_sim.api_key, roomy_sim.api_secret, weight_limit=WEIGHT_LIMIT)
    yield exchange
    await exchange.aclose()


class Chaos:
    """The monitor process, killed and restarted at random.

    A killed leader's lease is expired at once, as if it had run out: this test is about what a restarted monitor
    finds and finishes, not about how soon it may lead (test_failover and test_hung_leader are).
    """

    def __init__(self, process: MonitorProcess, rng: random.Random, database: Database) -> None:
        self.process = process
        self.rng = rng
        self.database = database
        self.kills = 0

    async def maybe_kill(self) -> None:
        if self.rng.random() >= KILL_CHANCE:
            return
        self.process.kill()
        with self.database.session() as session:
            session.execute(text("UPDATE monitor_lease SET expires_at = least(expires_at, now())"))
        self.kills += 1
        if self.rng.random() < 0.5:
            await asyncio.sleep(self.rng.uniform(0.0, 0.4))  # the exchange moves on while nobody watches
        self.process.start()

    def ensure_running(self) -> None:
        if not self.process.alive():
            self.process.start()


def _steps(p: Position, scenario: str) -> list[Decimal]:
    """Prices that walk one position through its scenario (mirrored for shorts)."""
    assert p.levels is not None
    assert p.stop_price is not None
    sign = p.direction.sign
    tick = p.policy.rules.tick_size
    beyond_tp1 = p.levels.tp1 + sign * 2 * tick
    match scenario:
        case "tp2":
            return [beyond_tp1, p.levels.tp2 + sign * 2 * tick]
        case "breakeven":  # back to the entry after TP1: the breakeven stop (just beyond the entry) fires
            return [beyond_tp1, p.entry_price * (1 - sign * Decimal("0.001"))]
        case "stop":
            return [p.stop_price * (1 - sign * Decimal("0.005"))]
    return []


def _flush_price(p: Position) -> Decimal:
    """Beyond every stop the position can have (the first one is the farthest)."""
    first = next(o for o in p.orders if o.role is Role.STOP)
    assert first.trigger is not None
    return first.trigger * (1 - p.direction.sign * Decimal("0.01"))


async def _protected(desk: Desk, exchange: BinanceFutures, keys: list[str]) -> bool:
    """Every position is closed, or open with nothing pending and exactly its live legs on the exchange."""
    positions = [desk.position(k) for k in keys]
    open_ = [p for p in positions if not p.is_terminal]
    for p in open_:
        if p.phase not in (Phase.OPEN, Phase.TP1_DONE) or any(
            o.state in (OrderState.REQUESTED, OrderState.CANCELING) for o in p.orders
        ):
            return False
    algos = [a for a in await exchange.open_algo_orders() if is_own_client_id(a.client_algo_id)]
    for p in open_:
        stop = p.current_order(Role.STOP)
        if stop is None or stop.state is not OrderState.ACTIVE or stop.trigger != p.stop_price:
            return False
        mine = [a for a in algos if a.symbol == p.symbol]
        live = {o.client_id for o in p.orders if o.algo and o.state.live}
        stops = [a for a in mine if a.type.value == "STOP_MARKET"]
        if {a.client_algo_id for a in mine} != live or [a.client_algo_id for a in stops] != [stop.client_id]:
            return False
        if stops[0].trigger_price != p.stop_price or not (stops[0].close_position or stops[0].quantity >= p.open_qty):
            return False
    return {a.symbol for a in algos} <= {p.symbol for p in open_}


async def _wait_protected(desk: Desk, exchange: BinanceFutures, keys: list[str], chaos: Chaos) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not await _protected(desk, exchange, keys):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("positions not protected after restarts:\n" + chaos.process.log_tail(80))
        await asyncio.sleep(0.2)


async def _exchange_state(server: SimServer) -> dict[str, Any]:
    engine = server.engine
    return {
        "trades": list(engine.trades),
        "orders": [(o.client_order_id, o.type, o.orig_type) for o in engine.orders.values()],
        "algos": [a.client_algo_id for a in engine.algo_orders.values()],
    }


async def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    roomy_sim: SimServerThread, exchange: BinanceFutures, db: Database, tmp_path: Path
) -> None:
    rng = random.Random(20260101)
    env = monitor_env(
        roomy_sim.rest_url,
        roomy_sim.ws_url,
        db,
        tmp_path,
        ATS_EXCHANGE__WEIGHT_LIMIT_PER_MINUTE=str(WEIGHT_LIMIT),
        ATS_MONITOR__RECONCILE_INTERVAL_S="30",
    )
    chaos = Chaos(MonitorProcess(env, tmp_path / "monitor.log", fast=True), rng, db)
    desk = Desk(exchange, db)
    control = roomy_sim.control
    keys: list[str] = []
    chaos.process.start()
    try:
        wait_role(db, chaos.process, "active", timeout_s=20)
        for _ in range(ROUNDS):
            opened = {s: await desk.open(s, rng.choice(list(Direction))) for s in SYMBOLS}
            keys.extend(opened.values())
            walks = {s: _steps(desk.position(k), rng.choice(SCENARIOS)) for s, k in opened.items()}
            while any(walks.values()):
                symbol = rng.choice([s for s, prices in walks.items() if prices])
                control.set_price(symbol, walks[symbol].pop(0))
                await asyncio.sleep(rng.uniform(0.0, 0.15))
                await chaos.maybe_kill()
            chaos.ensure_running()
            await _wait_protected(desk, exchange, list(opened.values()), chaos)

            for key in opened.values():
                p = desk.position(key)
                if not p.is_terminal:
                    control.set_price(p.symbol, _flush_price(p))
                    await chaos.maybe_kill()
            chaos.ensure_running()
            round_keys = list(opened.values())
            await wait_for(
                lambda: all(desk.position(k).is_terminal for k in round_keys),  # noqa: B023  (awaited here)
                timeout_s=30,
                what="every position of the round closed",
            )

        assert chaos.process.terminate() == 0
        log = chaos.process.log_path.read_text()
        assert "Traceback" not in log, chaos.process.log_tail(120)
        assert " ERROR " not in log, [line for line in log.splitlines() if " ERROR " in line]  # e.g. a false vanish
    finally:
        chaos.process.kill()

    assert len(keys) == ROUNDS * len(SYMBOLS)
    assert chaos.kills >= 5
    assert desk.journal.open_positions() == []
    for key in keys:
        p = desk.position(key)
        assert p.phase is Phase.CLOSED, p
        assert p.exit_qty == p.entry_qty > 0
    assert await exchange.positions() == []
    assert await exchange.open_algo_orders() == []
    assert await exchange.open_orders() == []

    state = roomy_sim.call(_exchange_state)
    assert fills_in_db(db) == fills_on_exchange(state["trades"])
    sent = Counter(cid for cid, kind, original in state["orders"] if is_own_client_id(cid) and kind == original)
    assert [cid for cid, n in sent.items() if n > 1] == []
    algos = Counter(cid for cid in state["algos"] if is_own_client_id(cid))
    assert [cid for cid, n in algos.items() if n > 1] == []
