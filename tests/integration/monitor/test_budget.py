"""Protective work and the shared request budget, with the real monitor, the simulated exchange and the budget in
PostgreSQL: another process using its share of the minute's weight, or a 429 storm, does not hold up the
breakeven stop after TP1. The monitor re-drives on its production schedule, so nothing here is helped by the
shortened test timings; each test prints the figure it measured (pytest -s)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import create_engine

from ats.clock import WallClock
from ats.domain import client_id
from ats.exchange.binance import BinanceFutures, budget_scope
from ats.exchange.budget import MINUTE_MS, BudgetLimits, Priority, RequestBudget, reserve
from ats.exchange.errors import RateLimited
from ats.lifecycle import Phase
from db.rate_limits import PostgresBudgetStore
from db.session import Database
from monitor.worker import Tuning
from sim.faults import FaultKind
from sim.server import SimServer
from tests.integration.monitor.harness import FAST, Desk, RunningMonitor, breakeven_up, client, start_monitor, wait_for

SYMBOL = "BTCUSDT"
PRODUCTION_REDRIVE = replace(
    FAST, pending_interval_s=Tuning().pending_interval_s, pending_age_s=Tuning().pending_age_s
)  # and FAST keeps the production re-drive back-off
STORM_429S = 6  # answers of the storm, one a second: it lasts as long as the stop's retries keep meeting it


@pytest.fixture
def shared(db: Database) -> PostgresBudgetStore:
    return PostgresBudgetStore(db.engine)


@pytest.fixture
def other_process(db: Database) -> Iterator[PostgresBudgetStore]:
    """The same budget through another engine (its own connections), as another process on the host sees it."""
    engine = create_engine(db.engine.url.render_as_string(hide_password=False))
    yield PostgresBudgetStore(engine)
    engine.dispose()


@pytest.fixture
async def desk(sim: SimServer, db: Database) -> AsyncIterator[Desk]:
    exchange = client(sim.rest_url, sim.api_key, sim.api_secret)
    yield Desk(exchange, db)
    await exchange.aclose()


@pytest.fixture
async def monitor(sim: SimServer, db: Database, shared: PostgresBudgetStore) -> AsyncIterator[RunningMonitor]:
    running = await start_monitor(
        sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, budget_store=shared, tuning=PRODUCTION_REDRIVE
    )
    yield running
    await running.shutdown()


async def open_position(desk: Desk) -> tuple[str, Decimal]:
    key = await desk.open(SYMBOL)
    position = await desk.wait(key, lambda p: p.phase is Phase.OPEN, "protected")
    assert position.levels is not None
    return key, position.levels.tp1 + position.policy.rules.tick_size


async def placed_on_exchange(sim: SimServer, cid: str, timeout_s: float = 30.0) -> float:
    """When (time.monotonic) an open algo order with this client id exists on the exchange."""

    def probe() -> float | None:
        found = any(a.client_algo_id == cid and a.is_open for a in list(sim.engine.algo_orders.values()))
        return time.monotonic() if found else None

    return await wait_for(probe, timeout_s=timeout_s, what=f"{cid} on the exchange")


async def use_the_normal_share(scan: BinanceFutures, store: PostgresBudgetStore) -> None:
    """Scan until the budget refuses normal work for the rest of the minute (at least 10 s of it left)."""
    limits = BudgetLimits()
    for _ in range(2):
        for request in (scan.tickers_24h, scan.server_time):  # weight 40, then 1 to the last unit
            with contextlib.suppress(RateLimited):  # the budget refuses the next request: the share is used
                while True:
                    await request()
        state = await asyncio.to_thread(store.snapshot, scan.budget.scope)
        _, normal = reserve(state, scan.budget.now_ms(), 1, 0, limits, Priority.NORMAL)
        if normal.wait_ms >= 10_000:
            return
        await asyncio.sleep(normal.wait_ms / 1000 + 0.2)  # too near the end of the minute: use the next one
    raise AssertionError("the scan could not use up its share of a minute")


async def test_a_scan_that_used_its_share_of_the_minute_does_not_delay_the_breakeven_stop(
    sim: SimServer, desk: Desk, monitor: RunningMonitor, other_process: PostgresBudgetStore
) -> None:
    key, tp1 = await open_position(desk)
    scan = client(sim.rest_url, sim.api_key, sim.api_secret, budget_store=other_process, max_wait_s=0.1)
    try:
        await use_the_normal_share(scan, other_process)
    finally:
        await scan.aclose()

    started = time.monotonic()
    await sim.set_price(SYMBOL, tp1)
    placed = await placed_on_exchange(sim, client_id(key, "S2"))
    await desk.wait(key, breakeven_up, "breakeven stop in place, the original one cancelled")
    done = time.monotonic()
    print(
        f"\nanother process used its share of the minute; after TP1 the breakeven stop was on the exchange in "
        f"{placed - started:.2f} s, in place with the original one cancelled in {done - started:.2f} s"
    )
    assert done - started < 2.0


async def test_the_breakeven_stop_goes_out_as_a_429_storm_ends(
    sim: SimServer, desk: Desk, monitor: RunningMonitor
) -> None:
    key, tp1 = await open_position(desk)
    storm = sim.faults.add(FaultKind.RATE_LIMIT, path="/fapi/*", count=STORM_429S, retry_after_s=1)

    started = time.monotonic()
    await sim.set_price(SYMBOL, tp1)
    ended = await wait_for(
        lambda: None if any(rule is storm for rule in sim.faults.rules) else time.monotonic(),
        timeout_s=30,
        what="the end of the 429 storm",
    )
    placed = await placed_on_exchange(sim, client_id(key, "S2"))
    print(
        f"\n429 storm of {ended - started:.1f} s (Retry-After 1 s): breakeven stop on the exchange "
        f"{placed - ended:.2f} s after its last 429"
    )
    assert placed - ended < 1.5  # the last Retry-After (1 s) and one round trip
    assert sim.limits.ban_check("127.0.0.1") is None  # every Retry-After honoured: no ban
    await desk.wait(key, breakeven_up, "breakeven stop in place, the original one cancelled")


async def use_the_sweeps_share(store: PostgresBudgetStore, scope: str) -> None:
    """Account-wide reads until the budget refuses the next (at least 15 s of the minute left)."""
    budget = RequestBudget(store, scope=scope, clock=WallClock(), limits=BudgetLimits())
    left_ms = MINUTE_MS - budget.now_ms() % MINUTE_MS
    if left_ms < 15_000:  # too near the end of the minute: use the next one
        await asyncio.sleep(left_ms / 1000 + 0.2)
    with contextlib.suppress(RateLimited):
        while True:
            await budget.acquire(40, priority=Priority.SWEEP)


async def test_a_stream_gap_when_sweeps_used_up_the_minute_is_filled_from_the_positions_symbols(
    sim: SimServer, desk: Desk, db: Database, shared: PostgresBudgetStore, other_process: PostgresBudgetStore
) -> None:
    """Chaos runs: repeated stream faults each called for a full pass; once their account-wide reads had used up
    their part of the minute, the gap of the next fault was filled only when the minute ended (up to 35 s), though
    the positions' own symbols cost little."""
    tuning = replace(PRODUCTION_REDRIVE, fill_grace_s=600.0, probe_interval_s=600.0)  # only the gap finds the fill
    monitor = await start_monitor(
        sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db, budget_store=shared, tuning=tuning
    )
    try:
        key, tp1 = await open_position(desk)
        assert sim.stall_websockets(None, "/private/*") == 1
        await sim.set_price(SYMBOL, tp1)  # TP1 fills, unheard
        await use_the_sweeps_share(other_process, budget_scope(sim.rest_url))
        await sim.disconnect_websockets("/private/*")  # a gap: its full pass is refused by the budget
        await desk.wait(key, breakeven_up, "the breakeven stop, from the positions' own symbols", timeout_s=10.0)
    finally:
        await monitor.shutdown()
