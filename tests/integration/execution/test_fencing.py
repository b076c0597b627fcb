"""The monitor's fence on the real path: the executor, the REST client against the simulated exchange and the
PostgreSQL journal. A process whose renewals are stale (woken from SIGSTOP: its monotonic clock ran on) sends no
order and no cancel; one whose lease another process took records no transition."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from ats.clock import FakeClock, WallClock
from ats.execution import Executor
from ats.leadership import Fence, Held, LeaseTiming, NotLeader
from ats.lifecycle import CancelOrder, MarkPrice, Phase, Role
from db.journal import PostgresJournal
from db.lease import claim
from db.session import Database
from sim.server import SimServer
from tests.integration.monitor.harness import ACCOUNT, FAST_EXECUTION, Desk, client

ME = "monitor:main:test:1"


async def test_a_lapsed_fence_sends_nothing_and_a_taken_lease_records_nothing(sim: SimServer, db: Database) -> None:
    desk = Desk(client(sim.rest_url, sim.api_key, sim.api_secret), db)
    key = await desk.open("BTCUSDT")
    position = await desk.wait(key, lambda p: p.phase is Phase.OPEN, "protected")
    stop = position.current_order(Role.STOP)
    assert stop is not None
    assert stop.trigger is not None

    assert claim(db, ACCOUNT, ME, None, 30) == Held(1, acquired=True)
    mono, lapses = FakeClock(), list[str]()
    fence = Fence(ME, LeaseTiming(10), mono.monotonic, on_lapse=lapses.append)
    fence.begin(1, mono.monotonic())
    exchange = client(sim.rest_url, sim.api_key, sim.api_secret, fence=fence)
    journal = PostgresJournal(db, ACCOUNT, fence=fence, language="en")
    executor = Executor(exchange, journal, WallClock(), source="monitor", settings=FAST_EXECUTION)
    try:
        # Frozen for a minute, then woken in the middle of moving the stop: the cancel never leaves the process.
        mono.advance(61)
        algos = sim.engine.algo_orders.copy()
        with pytest.raises(NotLeader, match=r"DELETE /fapi/v1/algoOrder: refused, the lease \(epoch 1\)"):
            await executor.execute(key, [CancelOrder(stop.client_id, "BTCUSDT", algo=True)])
        assert lapses == ["the lease (epoch 1) was last renewed 61.0 s ago"]
        assert sim.engine.algo_orders == algos
        assert any(a.client_algo_id == stop.client_id for a in await exchange.open_algo_orders("BTCUSDT"))

        # A new term whose lease another process has taken since: its own renewals look fresh, the database
        # says otherwise, and the transition is not recorded.
        fence.begin(1, mono.monotonic())
        with db.session() as session:
            session.execute(text("UPDATE monitor_lease SET holder = 'monitor:main:other:2', epoch = 2"))
        beyond = MarkPrice(stop.trigger - Decimal(100), WallClock().now_ms())
        with pytest.raises(NotLeader, match="the lease of epoch 1 is no longer monitor:main:test:1's"):
            await executor.apply(key, [beyond])
        assert desk.position(key).stop_crossed_ms is None

        # The lease back under this very epoch: the same event is recorded.
        with db.session() as session:
            session.execute(text(f"UPDATE monitor_lease SET holder = '{ME}', epoch = 1"))  # noqa: S608
        await executor.apply(key, [beyond])
        assert desk.position(key).stop_crossed_ms == beyond.time_ms
    finally:
        await exchange.aclose()
        await desk.exchange.aclose()
