"""The monitor in-process against the simulated exchange and PostgreSQL: take-profits and the breakeven stop,
stop losses, client-side supervision, fills missed while it was down, adoption, orphans and manual closes."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from ats.domain import Direction, Side, client_id
from ats.exchange.base import AlgoOrderRequest, AlgoUpdate, OrderRequest, OrderType, OrderUpdate
from ats.exchange.binance import BinanceFutures
from ats.lifecycle import Phase, Position, Role
from ats.notify import ExitReason
from db.models import NotificationRow
from db.session import Database
from sim.server import SimServer
from tests.integration.monitor.harness import (
    Desk,
    RunningMonitor,
    breakeven_up,
    fills_in_db,
    fills_on_exchange,
    start_monitor,
    wait_for,
)

SYMBOL = "BTCUSDT"


def _open(p: Position) -> bool:
    return p.phase is Phase.OPEN


def _closed(p: Position) -> bool:
    return p.phase is Phase.CLOSED


def _stop_leg(p: Position) -> str | None:
    stop = p.current_order(Role.STOP)
    return stop.leg if stop else None


def _kinds(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(NotificationRow.kind).order_by(NotificationRow.id)).all())


def _alerts(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(NotificationRow.text).where(NotificationRow.kind == "alert")).all())


async def _settled(sim: SimServer, exchange: BinanceFutures, db: Database) -> None:
    """Nothing left on the exchange and every fill it made is recorded, once. The sim leaves a closed position's
    reduce-only siblings open (as a bot must expect): the monitor cancels them just after the close."""
    engine = sim.engine
    await wait_for(lambda: not engine.open_algos and not engine.open_orders, what="the leftover orders cancelled")
    assert await exchange.positions() == []
    assert await exchange.open_algo_orders() == []
    assert await exchange.open_orders() == []
    assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)


async def test_tp1_moves_the_stop_to_breakeven_then_tp2_closes(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.levels is not None
    tick = p.policy.rules.tick_size

    await sim.set_price(SYMBOL, p.levels.tp1 + tick)
    p = await desk.wait(key, breakeven_up, "breakeven stop in place")
    stop = p.current_order(Role.STOP)
    assert stop is not None
    assert stop.leg == "S2"
    assert p.stop_price is not None
    assert p.stop_price > p.entry_price  # covers the fees paid
    algos = {a.client_algo_id: a for a in await exchange.open_algo_orders(SYMBOL)}
    assert set(algos) == {client_id(key, "S2"), client_id(key, "T2")}
    assert algos[client_id(key, "S2")].trigger_price == p.stop_price
    assert algos[client_id(key, "S2")].quantity == p.open_qty

    assert p.levels is not None
    await sim.set_price(SYMBOL, p.levels.tp2 + tick)
    p = await desk.wait(key, _closed, "closed by TP2")
    assert p.exit_reason is ExitReason.TP2
    assert p.exit_qty == p.entry_qty
    await _settled(sim, exchange, db)
    assert _kinds(db) == ["entry", "tp1", "tp2"]


async def test_tp1_then_the_breakeven_stop_closes_the_rest(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL, Direction.SHORT)
    p = await desk.wait(key, _open, "protected")
    assert p.levels is not None
    tick = p.policy.rules.tick_size
    await sim.set_price(SYMBOL, p.levels.tp1 - tick)
    p = await desk.wait(key, breakeven_up, "breakeven stop in place")
    assert p.stop_price is not None
    assert p.stop_price < p.entry_price

    await sim.set_price(SYMBOL, p.stop_price + tick)
    p = await desk.wait(key, _closed, "closed by the breakeven stop")
    assert p.exit_reason is ExitReason.BREAKEVEN_STOP
    await _settled(sim, exchange, db)


async def test_the_stop_loss_closes_and_cancels_the_targets(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.stop_price is not None
    await sim.set_price(SYMBOL, p.stop_price - p.policy.rules.tick_size)
    p = await desk.wait(key, _closed, "stopped out")
    assert p.exit_reason is ExitReason.STOP
    assert p.realized_pnl < 0
    await _settled(sim, exchange, db)
    assert _kinds(db) == ["entry", "stop"]


async def test_supervision_closes_when_the_exchange_stop_does_not_fire(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.stop_price is not None
    # The stop disappears behind the monitor's back (its user stream hears nothing), then the price runs through.
    sim.stall_websockets(60, path="/private/*")
    sim.engine.cancel_algo({"clientAlgoId": client_id(key, "S1")})
    below = p.stop_price * Decimal("0.97")
    await sim.set_price(SYMBOL, below)
    for _ in range(7):  # mark ticks one (exchange) second apart: past the 5-second grace
        await sim.advance(1)
        await sim.set_price(SYMBOL, below)
    p = await desk.wait(key, _closed, "closed by supervision")
    assert p.exit_reason is ExitReason.SUPERVISION
    assert any("did not fire" in text for text in _alerts(db))
    (histogram,) = monitor.metrics.tick_to_action.collect()
    observed = histogram.samples
    assert next(s.value for s in observed if s.name.endswith("_count")) > 0  # the ticks' latency was measured
    assert await exchange.positions() == []


async def test_fills_missed_while_down_are_replayed_on_start(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.levels is not None
    await monitor.shutdown()
    assert {a.client_algo_id for a in await exchange.open_algo_orders(SYMBOL)} == {
        client_id(key, leg) for leg in ("S1", "T1", "T2")
    }  # protection stays on the exchange when the monitor stops

    await sim.set_price(SYMBOL, p.levels.tp1 + p.policy.rules.tick_size)  # TP1 fills; nobody listens
    restarted = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db)
    try:
        p = await desk.wait(key, breakeven_up, "breakeven stop after the replay")
        assert p.tp1_done
        assert {a.client_algo_id for a in await exchange.open_algo_orders(SYMBOL)} == {
            client_id(key, "S2"),
            client_id(key, "T2"),
        }
        assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)
    finally:
        await restarted.shutdown()


async def test_unknown_positions_are_adopted_and_orphans_cancelled(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    await exchange.new_order(OrderRequest("ETHUSDT", Side.BUY, OrderType.MARKET, Decimal("0.100"), "web_manual_1"))
    orphan = "ats_deadbeefdeadbeef_S1"
    await exchange.new_algo_order(
        AlgoOrderRequest(
            "SOLUSDT",
            Side.SELL,
            OrderType.STOP_MARKET,
            Decimal("100.00"),
            orphan,
            quantity=Decimal("1"),
            reduce_only=True,
        )
    )
    await monitor.reconcile()

    adopted = [p for p in desk.journal.open_positions() if p.symbol == "ETHUSDT"]
    assert len(adopted) == 1
    p = adopted[0]
    assert p.adopted
    assert p.open_qty == Decimal("0.100")
    assert p.phase is Phase.OPEN
    algos = {a.client_algo_id for a in await exchange.open_algo_orders()}
    assert algos == {client_id(p.key, leg) for leg in ("S1", "T1", "T2")}  # orphan gone, adoption protected
    assert any("Adopted" in text for text in _alerts(db))


async def test_a_manual_close_on_the_exchange_ends_the_position(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    request = OrderRequest(SYMBOL, Side.SELL, OrderType.MARKET, p.open_qty, "web_close_1", reduce_only=True)
    await exchange.new_order(request)
    p = await desk.wait(key, _closed, "closed outside the system")
    assert p.exit_reason is ExitReason.EXTERNAL
    await _settled(sim, exchange, db)


async def test_a_dropped_user_stream_is_filled_in_by_reconciliation(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.levels is not None
    await sim.disconnect_websockets("/private/*")
    await sim.set_price(SYMBOL, p.levels.tp1 + p.policy.rules.tick_size)  # TP1 fills while the stream is down
    p = await desk.wait(key, breakeven_up, "breakeven stop after the gap was reconciled")
    assert p.tp1_done
    assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)


async def test_funding_is_recorded_when_the_account_update_announces_it(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    await desk.wait(key, _open, "protected")
    engine = sim.engine
    now = sim.clock.now_ms()
    engine._record_income(SYMBOL, "FUNDING_FEE", Decimal("-0.12345678"), now, "")  # the sim's own settlement path
    engine._account_update("FUNDING_FEE", [SYMBOL], now, balance_change=Decimal("-0.12345678"))
    p = await desk.wait(key, lambda p: p.funding != 0, "funding recorded")
    assert p.funding == Decimal("-0.12345678")
    await monitor.reconcile()  # a later pass sees the same payment and changes nothing
    assert desk.position(key).funding == Decimal("-0.12345678")


async def test_a_liquidation_closes_the_position(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    sim.engine.cancel_algo({"clientAlgoId": client_id(key, "S1")})  # no stop left to fire first
    await sim.set_price(SYMBOL, p.entry_price * Decimal("0.5"))
    p = await desk.wait(key, _closed, "closed by the liquidation")
    assert p.exit_reason is ExitReason.LIQUIDATION
    assert p.liquidation_qty == p.entry_qty
    assert await exchange.positions() == []
    await desk.wait(key, lambda p: not any(o.state.live for o in p.orders), "every leg finished")
    assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)


async def test_a_stop_stuck_after_triggering_is_replaced(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    key = await desk.open(SYMBOL)
    await desk.wait(key, _open, "protected")
    # As seen on Binance: the algo service marks the stop triggered but never hands an order to the engine.
    stop = next(a for a in sim.engine.algo_orders.values() if a.client_algo_id == client_id(key, "S1"))
    sim.engine.open_algos.pop(stop.algo_id)
    stop.status, stop.update_time_ms = "TRIGGERING", sim.clock.now_ms() - 60_000
    await monitor.reconcile()
    await desk.wait(key, lambda p: _open(p) and _stop_leg(p) == "S2", "a new stop")
    assert {a.client_algo_id for a in await exchange.open_algo_orders(SYMBOL)} == {
        client_id(key, leg) for leg in ("S2", "T1", "T2")
    }
    assert any("Stop S1 expired" in text for text in _alerts(db))


async def test_a_replacement_stop_answered_unknown_and_not_placed_is_resent_at_once(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    """Issue 16, hole 7: the stop is cancelled on the exchange, and the monitor's replacement is answered 503
    "Unknown error" without being placed. The look-up says "not found", so it is sent again at once (it used to
    wait for a re-drive: 6-20 s without any stop)."""
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    sim.faults.add("unknown_error", path="/fapi/v1/algoOrder", method="POST", count=1, execute=False)
    replacement = client_id(key, "S2")

    def stop_on_exchange() -> bool:
        return any(a.client_algo_id == replacement for a in sim.engine.open_algos.values())

    started = time.monotonic()
    await exchange.cancel_algo_order(client_algo_id=client_id(key, "S1"))
    await wait_for(stop_on_exchange, what="the replacement stop on the exchange")
    unprotected_s = time.monotonic() - started
    print(f"hole 7: without an exchange stop for {unprotected_s:.3f} s")  # the figure, shown with -s
    assert unprotected_s < 1.0, f"{unprotected_s:.2f} s without a stop"
    assert sim.faults.rules == []  # the fault was hit: the first send was answered "unknown"

    p = await desk.wait(key, lambda p: _open(p) and _stop_leg(p) == "S2", "the replacement stop acknowledged")
    assert [a.client_algo_id for a in sim.engine.algo_orders.values()].count(replacement) == 1
    assert [(x.symbol, x.amount) for x in await exchange.positions()] == [(SYMBOL, p.open_qty)]
    assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)


async def test_a_stop_fill_under_another_client_id_is_attributed_to_the_stop(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database, monitor: RunningMonitor
) -> None:
    """Binance may give the order a triggered algo creates a client id of its own; when its fill arrives before
    the ALGO_UPDATE that names it, reconciliation attributes it (an external fill would be the wrong story)."""
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.stop_price is not None
    emitted: list[dict[str, Any]] = []
    unsubscribe = sim.engine.subscribe(emitted.append)
    sim.stall_websockets(60, path="/private/*")  # the monitor hears none of the real events
    await sim.set_price(SYMBOL, p.stop_price - p.policy.rules.tick_size)
    unsubscribe()
    fill = next(e for e in emitted if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE")
    sim.stall_websockets(0, path="/private/*")
    sim._user_event(sim.api_key, {**fill, "o": {**fill["o"], "c": "x-venue-generated-17"}})
    p = await desk.wait(key, _closed, "closed by the stop")
    assert p.exit_reason is ExitReason.STOP
    assert p.external_qty == 0
    await _settled(sim, exchange, db)


async def test_a_position_whose_redrive_fails_does_not_hold_up_the_others(
    desk: Desk, monitor: RunningMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two entries recorded but never sent (a placement task that died): the monitor re-drives both, even when
    re-driving one of them keeps failing."""
    keys = {(await desk.record(symbol)).key for symbol in (SYMBOL, "ETHUSDT")}
    tried: set[str] = set()

    async def broken(key: str, *, resend_entries: bool = True) -> list[Any]:
        tried.add(key)
        raise RuntimeError("a bug in one position's re-drive")

    monkeypatch.setattr(monitor.monitor._executor, "redrive", broken)
    await wait_for(lambda: tried == keys, what="a re-drive of every pending position")


async def test_a_user_event_that_fails_to_dispatch_is_repaired_by_reconciliation(
    sim: SimServer, desk: Desk, monitor: RunningMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.levels is not None
    executor = monitor.monitor._executor
    record = executor.record_update
    lost: list[str] = []

    def database_down_once(cid: str, update: OrderUpdate | AlgoUpdate) -> None:
        if isinstance(update, OrderUpdate) and update.execution_type == "TRADE" and not lost:
            lost.append(cid)
            raise RuntimeError("the database is unreachable")
        record(cid, update)

    monkeypatch.setattr(executor, "record_update", database_down_once)
    await sim.set_price(SYMBOL, p.levels.tp1 + p.policy.rules.tick_size)  # TP1's fill cannot be dispatched
    p = await desk.wait(key, breakeven_up, "breakeven stop once reconciliation found the lost fill")
    assert lost == [client_id(key, "T1")]
