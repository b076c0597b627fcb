"""A user stream that stops delivering while its socket stays open (issue 16, hole 1), against the simulated
exchange and PostgreSQL with the monitor in-process.

The sim drops the events of a stalled socket; whether the socket still answers pings, or its listenKey expired
without a word, the monitor must find the fills over REST within seconds: a level the mark price reached without
a fill, a probe of the exchange's positions, a ping without a pong. Prices are driven; nothing waits on the wall
clock except the monitor's short grace, and every wait is for an outcome (with a deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import select

from ats.clock import WallClock
from ats.config import ExchangeSettings, Settings, Venue
from ats.domain import Side
from ats.exchange.base import OrderRequest, OrderType, PositionInfo
from ats.exchange.binance import BinanceFutures
from ats.lifecycle import OrderState, Phase, Position, Role
from ats.notify import ExitReason
from ats.reconcile import reconcile
from db.models import NotificationRow
from db.session import Database
from sim.server import SimServer
from tests.integration.monitor.harness import (
    ACCOUNT,
    FAST,
    Desk,
    RunningMonitor,
    breakeven_up,
    fills_in_db,
    fills_on_exchange,
    start_monitor,
    wait_for,
)

SYMBOL = "BTCUSDT"
USER = "/private/*"
NO_LEVEL_CHECKS = replace(FAST, fill_grace_s=600.0)  # isolates the other mechanisms


def _open(p: Position) -> bool:
    return p.phase is Phase.OPEN


def _closed(p: Position) -> bool:
    return p.phase is Phase.CLOSED


def _notifications(db: Database) -> list[tuple[str, str]]:
    with db.session() as session:
        return [(k, t) for k, t in session.execute(select(NotificationRow.kind, NotificationRow.text)).all()]


def _user_sockets(sim: SimServer) -> list[bool]:
    """Whether each open user-stream socket is stalled."""
    return [c.stalled for c in sim.connections if c.family == "private"]


def _reconnects(monitor: RunningMonitor) -> int:
    return monitor.monitor._user.health().reconnects


async def _replaced(sim: SimServer, monitor: RunningMonitor, reconnects: int) -> None:
    """The monitor dropped the mute socket and reads a fresh one."""
    await wait_for(lambda: _reconnects(monitor) > reconnects and False in _user_sockets(sim), what="a fresh stream")


def _checks(monitor: RunningMonitor, trigger: str, outcome: str) -> float:
    labels = {"trigger": trigger, "outcome": outcome}
    return monitor.metrics.registry.get_sample_value("ats_monitor_fill_checks_total", labels) or 0.0


async def _checked(monitor: RunningMonitor, trigger: str, outcome: str, count: int) -> None:
    await wait_for(lambda: _checks(monitor, trigger, outcome) == count, what=f"{count} {trigger} checks: {outcome}")


async def _settled(sim: SimServer, exchange: BinanceFutures, db: Database) -> None:
    assert await exchange.positions() == []
    assert await exchange.open_algo_orders() == []
    assert await exchange.open_orders() == []
    assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)


def _stall(sim: SimServer) -> None:
    assert sim.stall_websockets(None, USER) == 1  # open, answering pings, delivering nothing


def _expire_silently(sim: SimServer) -> None:
    assert sim.expire_listen_keys(silent=True) == 1  # the key is gone, the socket open and mute


@pytest.mark.parametrize("mute", [_stall, _expire_silently], ids=["stall", "silent-listen-key-expiry"])
async def test_tp1_and_the_stop_crossed_while_the_user_stream_is_mute(
    sim: SimServer,
    exchange: BinanceFutures,
    desk: Desk,
    db: Database,
    monitor: RunningMonitor,
    mute: Callable[[SimServer], None],
) -> None:
    key = await desk.open(SYMBOL)
    p = await desk.wait(key, _open, "protected")
    assert p.levels is not None
    tick = p.policy.rules.tick_size

    mute(sim)
    started = time.perf_counter()
    await sim.set_price(SYMBOL, p.levels.tp1 + tick)  # TP1 fills on the exchange; the monitor hears nothing
    p = await desk.wait(key, breakeven_up, "the breakeven stop, from the fill found over REST")
    breakeven_s = time.perf_counter() - started
    print(f"\nTP1 -> breakeven stop with the user stream mute ({mute.__name__}): {breakeven_s:.2f} s")
    assert breakeven_s < 5.0
    assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)
    await _checked(monitor, "level", "missed", 1)
    await _replaced(sim, monitor, 0)
    reconnected_ms = monitor.monitor._user.health().connected_since_ms
    assert reconnected_ms is not None
    await monitor.reconciled(after_ms=reconnected_ms)  # the new connection's gap, filled over REST

    mute(sim)  # the new connection goes mute too
    assert p.stop_price is not None
    started = time.perf_counter()
    await sim.set_price(SYMBOL, p.stop_price - tick)  # the breakeven stop fires on the exchange, unheard
    p = await desk.wait(key, _closed, "closed from the exchange's truth")
    print(f"breakeven stop fill -> position closed with the user stream mute: {time.perf_counter() - started:.2f} s")
    await _checked(monitor, "level", "missed", 2)
    assert p.exit_reason is ExitReason.BREAKEVEN_STOP
    assert not [o for o in p.orders if o.role is Role.CLOSE]  # no market close was sent: nothing to reject
    assert [kind for kind, _ in _notifications(db)] == ["entry", "tp1", "stop"]  # no alert
    await _settled(sim, exchange, db)


async def test_a_stop_reached_while_tp1_is_still_being_checked_is_checked_too(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database
) -> None:
    """Chaos runs after user-stream faults: the breakeven stop fired unheard while TP1's level check was still in
    its grace; that check skipped the new level, and the stop's fill waited for the probe (15-50 s)."""
    tuning = replace(FAST, fill_grace_s=2.0, probe_interval_s=600.0)  # only the level check can find the fill
    monitor = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, tuning=tuning)
    try:
        key = await desk.open(SYMBOL)
        p = await desk.wait(key, _open, "protected")
        assert p.levels is not None
        tick = p.policy.rules.tick_size
        await sim.set_price(SYMBOL, p.levels.tp1 + tick)  # heard: TP1's level check now waits out its grace
        p = await desk.wait(key, breakeven_up, "the breakeven stop")
        assert p.stop_price is not None
        _stall(sim)
        await sim.set_price(SYMBOL, p.stop_price - tick)  # the breakeven stop fires on the exchange, unheard
        p = await desk.wait(key, _closed, "closed from the level check", timeout_s=10.0)
        assert p.exit_reason is ExitReason.BREAKEVEN_STOP
        await _settled(sim, exchange, db)
    finally:
        await monitor.shutdown()


async def test_a_stop_reached_before_the_monitor_knew_it_is_checked_when_it_learns_it(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database
) -> None:
    """Chaos runs: a reconciliation placed the breakeven stop and the mark reached it before the monitor's view
    knew it; with the user stream mute, its fill was found only by the next full pass (24 s, budget permitting)."""
    tuning = replace(FAST, pending_interval_s=1.0, probe_interval_s=600.0)  # the view is refreshed every second
    monitor = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, tuning=tuning)
    try:
        key = await desk.open(SYMBOL)
        p = await desk.wait(key, _open, "protected")
        assert p.levels is not None
        tick = p.policy.rules.tick_size
        _stall(sim)
        await sim.set_price(SYMBOL, p.levels.tp1 + tick)  # TP1 fills, unheard
        settings = Settings(venue=Venue.SIM, account=ACCOUNT, exchange=ExchangeSettings(rest_url=sim.rest_url))
        await reconcile(exchange, desk.journal, desk.executor, WallClock(), settings)  # the reconcile flow's pass
        p = await desk.wait(key, breakeven_up, "the breakeven stop, placed by the reconciliation")
        assert p.stop_price is not None
        await sim.set_price(SYMBOL, p.stop_price - tick)  # fires on the exchange, unheard, maybe before the view knows
        p = await desk.wait(key, _closed, "closed from a level check", timeout_s=10.0)
        assert p.exit_reason is ExitReason.BREAKEVEN_STOP
        await _settled(sim, exchange, db)
    finally:
        await monitor.shutdown()


async def test_a_supervision_close_refused_as_reducing_nothing_is_reconciled_not_retried(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database
) -> None:
    """The stop fired unheard and supervision closed at market before anything looked (level checks off): -2022.
    No second close, no alert: the reconciliation it asks for finds the stop's fill and closes the position."""
    running = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, tuning=NO_LEVEL_CHECKS)
    try:
        key = await desk.open(SYMBOL)
        p = await desk.wait(key, _open, "protected")
        assert p.stop_price is not None
        _stall(sim)
        below = p.stop_price * Decimal("0.97")
        await sim.set_price(SYMBOL, below)  # S1 fires: the exchange is flat
        await desk.wait(key, lambda p: p.stop_crossed_ms is not None, "the supervision clock started")
        for _ in range(30):  # mark ticks one exchange second apart until supervision acts
            if desk.position(key).close_reason is not None:
                break
            await sim.advance(1)
            await sim.set_price(SYMBOL, below)
            await wait_for(lambda: not running.monitor._mark_busy, what="the tick handled")
        p = await desk.wait(key, _closed, "closed from the exchange's truth")
        closes = [o for o in p.orders if o.role is Role.CLOSE]
        assert [(o.leg, o.state) for o in closes] == [("X1", OrderState.REJECTED)]  # one, refused, not retried
        assert p.exit_reason is ExitReason.STOP
        assert not p.needs_attention
        assert [kind for kind, _ in _notifications(db)] == ["entry", "stop"]  # no alert at all
        await _settled(sim, exchange, db)
    finally:
        await running.shutdown()


async def test_a_black_holed_user_stream_is_replaced_by_its_pings(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database
) -> None:
    """Pings go unanswered (level checks off): the missing pong drops the socket; the gap's reconciliation finds
    the TP1 fill."""
    running = await start_monitor(
        sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, tuning=NO_LEVEL_CHECKS, user_ping_s=0.5
    )
    try:
        key = await desk.open(SYMBOL)
        p = await desk.wait(key, _open, "protected")
        assert p.levels is not None
        assert sim.stall_websockets(None, USER, pings=False) == 1
        started = time.perf_counter()
        await sim.set_price(SYMBOL, p.levels.tp1 + p.policy.rules.tick_size)
        await _replaced(sim, running, 0)
        print(f"\nblack-holed user stream replaced after {time.perf_counter() - started:.2f} s (pings every 0.5 s)")
        await desk.wait(key, breakeven_up, "the breakeven stop after the gap was reconciled")
        print(f"TP1 -> breakeven stop through the ping timeout: {time.perf_counter() - started:.2f} s")
        assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)
    finally:
        await running.shutdown()


async def test_a_fill_without_a_level_is_found_by_the_probe(
    sim: SimServer, exchange: BinanceFutures, desk: Desk, db: Database
) -> None:
    """A manual close on the exchange crosses no level: the probe of the exchange's positions finds it."""
    tuning = replace(FAST, probe_interval_s=0.5, fill_grace_s=0.3)
    running = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, tuning=tuning)
    try:
        key = await desk.open(SYMBOL)
        p = await desk.wait(key, _open, "protected")
        _stall(sim)
        request = OrderRequest(SYMBOL, Side.SELL, OrderType.MARKET, p.open_qty, "web_close_1", reduce_only=True)
        await exchange.new_order(request)
        p = await desk.wait(key, _closed, "closed outside the system, found by the probe")
        assert p.exit_reason is ExitReason.EXTERNAL
        await _checked(running, "probe", "missed", 1)
        await _replaced(sim, running, 0)
        await _settled(sim, exchange, db)
    finally:
        await running.shutdown()


async def test_quiet_positions_cost_a_cheap_probe_and_no_reconnection(
    sim: SimServer, desk: Desk, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing happens: the stream stays up and nothing is reconciled; only the probe (one request) runs."""
    tuning = replace(FAST, probe_interval_s=0.2)
    running = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, tuning=tuning)
    try:
        key = await desk.open(SYMBOL)
        await desk.wait(key, _open, "protected")
        exchange = running.monitor._exchange
        reads: list[str | None] = []
        original = exchange.positions

        async def counted(symbol: str | None = None) -> list[PositionInfo]:
            reads.append(symbol)
            return await original(symbol)

        monkeypatch.setattr(exchange, "positions", counted)
        await wait_for(lambda: len(reads) >= 3, what="three probes")
        assert set(reads) == {None}  # the account's positions in one request, no symbol reconciled
        assert _user_sockets(sim) == [False]
        assert _reconnects(running) == 0
        assert _checks(running, "probe", "missed") == _checks(running, "probe", "clean") == 0
    finally:
        await running.shutdown()
